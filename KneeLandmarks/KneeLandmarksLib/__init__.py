"""KneeLandmarks working parts (KNEEL two-stage hourglass landmarks, joint space width)."""
