"""Trunk framing (SpineMorphologyLib.person): a photo at another distance, aspect ratio or position
than the training photos is cropped around the trunk so that the networks see the framing they
were trained on, and the results are mapped back onto the whole photo."""
import cv2
import numpy as np
import pytest
import torch

from SpineMorphologyLib import morphology, person

from SpineMorphologyTools import phantom
from SpineMorphologyLib.network import INPUT_HEIGHT, INPUT_WIDTH
from SpineMorphologyLib.predict import BackPredictor

torch.set_num_threads(1)
NET_HW = (INPUT_HEIGHT, INPUT_WIDTH)


def true_trunk(photo, scale=1.0, offset=(0.0, 0.0)) -> person.Trunk:
    """Shoulder and hip joints placed from the phantom's exact spine line (C7 and the dimples) with
    the anatomical offsets ``person`` assumes."""
    c7, dimples = photo.spine_line_px[0], photo.spine_line_px[-1]
    length = float(dimples[1] - c7[1])
    sh = c7 + [0.0, person.SHOULDER_BELOW_C7 * length]
    hip = dimples + [0.0, person.HIP_BELOW_DIMPLES * length]
    pts = [sh + [0.4 * length, 0], sh - [0.4 * length, 0], hip + [0.3 * length, 0], hip - [0.3 * length, 0]]
    return person.Trunk(*[np.asarray(p) * scale + offset for p in pts])


@pytest.fixture(scope="module")
def photo():
    return phantom.make_back_photo(phantom.photo_seed(4242, 3))


@pytest.fixture(scope="module")
def predictor():
    return BackPredictor(framing="off")


def test_crop_frames_the_trunk_like_the_training_photos():
    trunk = person.Trunk([700, 300], [500, 300], [680, 800], [520, 800])  # shoulders 200 px wide, hips 500 px lower
    crop = person.trunk_crop(trunk, (2000, 1500), NET_HW)
    assert crop is not None
    assert crop.width / crop.height == pytest.approx(INPUT_WIDTH / INPUT_HEIGHT)
    length = 500 / (1 - person.SHOULDER_BELOW_C7 + person.HIP_BELOW_DIMPLES)
    assert length / crop.height == pytest.approx(person.TRUNK_FRACTION)
    assert crop.x0 + crop.width / 2 == pytest.approx(600)
    c7_y = 300 - person.SHOULDER_BELOW_C7 * length
    assert crop.y0 + crop.height / 2 == pytest.approx(c7_y + person.CENTRE_BELOW_C7 * length)
    back = crop.to_photo(crop.to_network(np.array([[600.0, 300.0], [10.0, 20.0]]), INPUT_WIDTH, INPUT_HEIGHT),
                         INPUT_WIDTH, INPUT_HEIGHT)
    assert back == pytest.approx(np.array([[600.0, 300.0], [10.0, 20.0]]))


def test_a_photo_framed_as_in_training_is_used_whole(photo):
    assert person.trunk_crop(true_trunk(photo), photo.rgb.shape[:2], NET_HW) is None


def test_implausible_poses_are_rejected():
    narrow = person.Trunk([310, 100], [290, 100], [305, 400], [295, 400])  # shoulders 20 px apart, trunk 300 px
    upside_down = person.Trunk([400, 500], [200, 500], [380, 100], [220, 100])
    unsure = person.Trunk([400, 100], [200, 100], [380, 400], [220, 400], visibility=0.2)
    ok = person.Trunk([400, 100], [200, 100], [380, 400], [220, 400], visibility=0.9)
    assert not narrow.plausible() and not upside_down.plausible() and not unsure.plausible()
    assert ok.plausible()


def test_cut_and_paste_round_trip():
    h, w = 300, 500
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.dstack([xx / w * 255, yy / h * 255, np.full_like(xx, 128)]).astype(np.uint8)
    crop = person.Crop(120.0, -40.0, 240.0, 320.0)  # reaches above the photo
    net = person.cut(image, crop, NET_HW)
    assert net.shape == (INPUT_HEIGHT, INPUT_WIDTH, 3)
    # the network pixel at the crop's centre shows the photo's pixel there
    cx, cy = crop.to_network(np.array([[240.0, 120.0]]), INPUT_WIDTH, INPUT_HEIGHT)[0]
    assert net[int(cy), int(cx), 0] == pytest.approx(240 / w * 255, abs=3)
    assert net[int(cy), int(cx), 1] == pytest.approx(120 / h * 255, abs=3)
    back = person.paste(net[..., 0].astype(np.float32), crop, (h, w), fill=-1)
    inside = (xx >= 125) & (xx <= 355) & (yy <= 270)
    assert np.abs(back[inside] - image[..., 0][inside]).max() < 4
    assert np.all(back[:, :100] == -1) and np.all(back[:, 400:] == -1)


def test_networks_find_the_back_in_a_wide_photo_when_framed(photo, predictor):
    """The same back, smaller and off-centre on a landscape photo: whole-photo input squeezes it
    out of shape and the keypoints fail; the trunk crop brings back the training framing."""
    s, ox, oy = 0.9, 520, 50
    canvas = np.empty((600, 1100, 3), np.uint8)
    canvas[:] = photo.rgb[4, 4]
    small = cv2.resize(photo.rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    canvas[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    truth = photo.keypoints_px * s + [ox, oy]
    length = float(photo.spine_line_px[-1, 1] - photo.spine_line_px[0, 1]) * s
    core = [2, 3, 4, 5, morphology.I_C7]

    def error(pred):
        return float(np.median(np.linalg.norm(pred.keypoints_px[core] - truth[core], axis=1))) / length

    whole = predictor.predict(canvas, check=False)
    framed = predictor.predict(canvas, check=False, trunk=true_trunk(photo, s, (ox, oy)))
    assert whole.crop is None and framed.crop is not None and framed.framing == "trunk crop (given)"
    assert error(framed) < 0.05
    assert error(framed) < 0.25 * error(whole)
    # the mask comes back on the photo grid, on the person and nowhere outside the crop
    assert framed.mask.shape == canvas.shape[:2]
    mask_truth = np.zeros(canvas.shape[:2], bool)
    mask_truth[oy:oy + small.shape[0], ox:ox + small.shape[1]] = cv2.resize(
        photo.back_mask.astype(np.uint8), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    iou = (framed.mask & mask_truth).sum() / (framed.mask | mask_truth).sum()
    assert iou > 0.8


def test_pose_model_finds_no_person_in_a_picture_without_one():
    import mediapipe  # noqa: F401  (.ci/setup installs it: missing is a failure)
    finder = person.PersonFinder()
    rng = np.random.default_rng(0)
    noise = (rng.uniform(0, 255, (480, 360, 3))).astype(np.uint8)
    wall = np.full((480, 360, 3), (200, 190, 170), np.uint8)
    assert finder.find(noise) is None
    assert finder.find(wall) is None
    finder.close()


def test_blazepose_finds_the_trunk_of_a_rendered_body_and_frames_a_wide_photo():
    """BlazePose on an anny body (the realistic body source): the shoulders and hips it finds sit
    where ``person`` expects them relative to C7 and the dimples, and on the same body placed
    small on a landscape photo the automatic framing crops it back to the training framing."""
    import mediapipe  # noqa: F401  (.ci/setup installs it: missing is a failure)
    from SpineMorphologyTools import anny_phantom

    photo = anny_phantom.make_anny_back_photo(phantom.photo_seed(777, 0))
    finder = person.PersonFinder()
    trunk = finder.find(photo.rgb)
    assert trunk is not None and trunk.source == "BlazePose"
    c7, dimples = photo.spine_line_px[0], photo.spine_line_px[-1]
    length = float(dimples[1] - c7[1])
    assert (trunk.shoulder_mid[1] - c7[1]) / length == pytest.approx(person.SHOULDER_BELOW_C7, abs=0.06)
    assert (trunk.hip_mid[1] - dimples[1]) / length == pytest.approx(person.HIP_BELOW_DIMPLES, abs=0.08)
    assert abs(trunk.shoulder_mid[0] - c7[0]) < 0.1 * length
    # the same photo, at 0.6 of its size, off-centre on a wide canvas
    s, ox, oy = 0.6, 700, 140
    canvas = np.empty((600, 1200, 3), np.uint8)
    canvas[:] = photo.rgb[3, 3]
    small = cv2.resize(photo.rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    canvas[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    found = finder.find(canvas)
    assert found is not None
    crop = person.trunk_crop(found, canvas.shape[:2], NET_HW)
    assert crop is not None
    # the crop holds the whole trunk, with the trunk about TRUNK_FRACTION of its height
    line = photo.spine_line_px * s + [ox, oy]
    assert crop.x0 < line[:, 0].min() and crop.x0 + crop.width > line[:, 0].max()
    assert crop.y0 < line[:, 1].min() and crop.y0 + crop.height > line[:, 1].max()
    assert (line[-1, 1] - line[0, 1]) / crop.height == pytest.approx(person.TRUNK_FRACTION, abs=0.1)
    finder.close()
