"""KneeLandmarks runtime (KNEEL two-stage hourglass landmarks, joint space width): pipeline, measure, landmarks, roi, network, predict, review, files, overlay, cli."""
