"""MSKCommonLib.image: every supported format round-trips (values, spacing, orientation) and every
bad input is refused with one clear ImageReadError. All files are made here, in tmp_path."""
from __future__ import annotations

import hashlib
import os

import cv2
import nrrd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from MSKCommonLib import image as rg
from MSKCommonLib.image import ImageReadError, Image, image_from_array, read_image
from conftest import write_dicom

H, W = 80, 96  # rows, columns
MARK = (2, 5)  # row 2, column 5


def image(dtype=np.uint8, high=200) -> np.ndarray:
    """A gradient with one brightest marker pixel at row 2, column 5."""
    rows, cols = np.mgrid[0:H, 0:W]
    arr = ((rows * 3 + cols) % (high // 2) + 10).astype(dtype)
    arr[MARK] = high
    return arr


def assert_marker(rad: Image):
    assert rad.pixels.shape == (H, W) and rad.pixels.dtype == np.float32
    assert np.unravel_index(np.argmax(rad.pixels), rad.pixels.shape) == MARK


def message(path, **kwargs) -> str:
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kwargs)
    text = str(info.value)
    assert str(path) in text, text  # every message names the file
    return text


# --------------------------------------------------------------------------------------------
# raster formats

@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff", ".PNG", ".TIF"])
@pytest.mark.parametrize("dtype,high", [(np.uint8, 250), (np.uint16, 60000)])
def test_gray_raster_round_trips_exactly(tmp_path, ext, dtype, high):
    arr = image(dtype, high)
    path = tmp_path / f"film{ext}"
    assert cv2.imwrite(str(path), arr)
    rad = read_image(path)
    np.testing.assert_array_equal(rad.pixels, arr.astype(np.float32))
    assert_marker(rad)
    assert rad.bits == (8 if dtype == np.uint8 else 16)
    assert rad.spacing_mm is None and rad.spacing_source == ""
    assert not rad.was_colour and rad.colourfulness == 0.0
    fmt = "PNG" if "png" in ext.lower() else "TIFF"
    assert rad.normalisation == f"{rad.bits}-bit {fmt}"
    assert rad.source == str(path) and (rad.height, rad.width) == (H, W)


def test_colour_png_becomes_luminance_gray(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, :] = (200, 100, 50)
    rgb[MARK] = (255, 255, 255)
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), rgb[:, :, ::-1])  # OpenCV writes BGR
    rad = read_image(path)
    assert rad.pixels[10, 10] == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50, abs=1e-3)
    assert rad.pixels[MARK] == pytest.approx(255, abs=1e-3)
    assert rad.was_colour and rad.colourfulness == pytest.approx(0.75, abs=0.01)
    assert "colour converted to gray" in rad.normalisation and rad.bits == 8


def test_colour_jpeg_becomes_gray_and_is_flagged_colourful(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, : W // 2] = (220, 40, 40)  # red half
    rgb[:, W // 2:] = (40, 40, 220)  # blue half
    path = tmp_path / "photo.JPG"
    cv2.imwrite(str(path), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    rad = read_image(path)
    red = 0.299 * 220 + 0.587 * 40 + 0.114 * 40
    blue = 0.299 * 40 + 0.587 * 40 + 0.114 * 220
    assert rad.pixels[H // 2, 10] == pytest.approx(red, abs=4)
    assert rad.pixels[H // 2, W - 10] == pytest.approx(blue, abs=4)
    assert rad.was_colour and rad.colourfulness > 0.6
    assert rad.normalisation == "8-bit JPEG, colour converted to gray"


def test_gray_jpeg_and_gray_stored_as_rgb(tmp_path):
    arr = image()
    cv2.imwrite(str(tmp_path / "gray.jpeg"), arr, [cv2.IMWRITE_JPEG_QUALITY, 100])
    rad = read_image(tmp_path / "gray.jpeg")
    assert not rad.was_colour and np.abs(rad.pixels - arr).max() <= 6
    cv2.imwrite(str(tmp_path / "rgbgray.png"), np.dstack([arr] * 3))
    rad = read_image(tmp_path / "rgbgray.png")
    np.testing.assert_allclose(rad.pixels, arr, atol=1e-3)
    assert rad.was_colour and rad.colourfulness == 0.0 and "equal channels" in rad.normalisation
    assert_marker(rad)


def test_16bit_colour_tiff_and_rgba_png(tmp_path):
    rgb16 = np.dstack([image(np.uint16, 60000)] * 3)
    cv2.imwrite(str(tmp_path / "c16.tif"), rgb16)
    rad = read_image(tmp_path / "c16.tif")
    assert rad.bits == 16 and rad.pixels[MARK] == pytest.approx(60000, rel=1e-6)
    rgba = np.dstack([image()] * 3 + [np.full((H, W), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    rad = read_image(tmp_path / "alpha.png")
    np.testing.assert_allclose(rad.pixels, image(), atol=1e-3)
    assert "alpha channel ignored" in rad.normalisation


def test_format_comes_from_the_content_not_the_name(tmp_path):
    cv2.imwrite(str(tmp_path / "x.jpg"), image(), [cv2.IMWRITE_JPEG_QUALITY, 100])
    (tmp_path / "x.jpg").rename(tmp_path / "really a jpeg.png")
    rad = read_image(tmp_path / "really a jpeg.png")
    assert rad.normalisation == "8-bit JPEG" and np.abs(rad.pixels - image()).max() <= 6
    cv2.imwrite(str(tmp_path / "p.png"), image())
    (tmp_path / "p.png").rename(tmp_path / "png_without_extension")
    np.testing.assert_array_equal(read_image(tmp_path / "png_without_extension").pixels, image())
    sitk.WriteImage(sitk_image(image(), (0.3, 0.4)), str(tmp_path / "n.nrrd"))
    (tmp_path / "n.nrrd").rename(tmp_path / "nrrd_without_extension")
    rad = read_image(tmp_path / "nrrd_without_extension")
    assert rad.spacing_mm == (0.4, 0.3) and rad.normalisation == "8-bit NRRD"
    sitk.WriteImage(sitk_image(image(), (0.3, 0.4)), str(tmp_path / "v.nii"))
    (tmp_path / "v.nii").rename(tmp_path / "nifti_without_extension")
    assert "rename it to *.nii" in message(tmp_path / "nifti_without_extension")


def test_file_name_with_spaces_and_string_path(tmp_path):
    path = tmp_path / "my folder" / "AP spine film 1.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), image())
    rad = read_image(str(path))
    assert rad.source == str(path)
    assert_marker(rad)


# --------------------------------------------------------------------------------------------
# DICOM

def test_dicom_monochrome2_16bit_pixel_spacing(tmp_path):
    arr = image(np.uint16, 4000)
    rad = read_image(write_dicom(tmp_path / "dx.dcm", arr, bits_stored=12))
    np.testing.assert_array_equal(rad.pixels, arr.astype(np.float32))
    assert_marker(rad)
    assert rad.spacing_mm == (0.2, 0.15) and rad.spacing_source == "PixelSpacing"
    assert rad.bits == 16 and rad.normalisation == "16-bit DICOM"


def test_dicom_imager_pixel_spacing_only_and_no_spacing(tmp_path):
    arr = image(np.uint16, 4000)
    rad = read_image(write_dicom(tmp_path / "a.dcm", arr, spacing_kw="ImagerPixelSpacing", spacing=(0.143, 0.139)))
    assert rad.spacing_mm == (0.143, 0.139) and rad.spacing_source == "ImagerPixelSpacing"
    rad = read_image(write_dicom(tmp_path / "b.dcm", arr, spacing_kw=None))
    assert rad.spacing_mm is None and rad.spacing_source == ""


def test_dicom_monochrome1_is_inverted_so_bright_becomes_dark(tmp_path):
    stored = image(np.uint16, 4000)  # the marker is the brightest stored value
    rad = read_image(write_dicom(tmp_path / "cr.dcm", stored, "MONOCHROME1", bits_stored=12))
    np.testing.assert_array_equal(rad.pixels, 4095.0 - stored)  # inverted over the 12-bit range
    assert np.unravel_index(np.argmin(rad.pixels), rad.pixels.shape) == MARK  # bright became dark
    assert rad.pixels[MARK] == 95.0 and "MONOCHROME1 inverted" in rad.normalisation

    stored8 = image(np.uint8, 250)
    rad = read_image(write_dicom(tmp_path / "cr8.dcm", stored8, "MONOCHROME1"))
    np.testing.assert_array_equal(rad.pixels, 255.0 - stored8)
    assert rad.bits == 8 and rad.normalisation == "8-bit DICOM, MONOCHROME1 inverted"


def test_dicom_8bit_monochrome2(tmp_path):
    arr = image(np.uint8, 250)
    rad = read_image(write_dicom(tmp_path / "x.dcm", arr))
    np.testing.assert_array_equal(rad.pixels, arr)
    assert rad.bits == 8


def test_dicom_rescale_slope_intercept_and_signed(tmp_path):
    arr = image(np.uint16, 4000)
    rad = read_image(write_dicom(tmp_path / "r.dcm", arr, bits_stored=12, slope=2, intercept=-100))
    np.testing.assert_array_equal(rad.pixels, arr.astype(np.float32) * 2 - 100)
    assert "rescaled (slope 2, intercept -100)" in rad.normalisation

    signed = image(np.int16, 2000) - 1000  # negative values
    rad = read_image(write_dicom(tmp_path / "s.dcm", signed, bits_stored=16, slope=0.5, intercept=10))
    np.testing.assert_array_equal(rad.pixels, signed.astype(np.float32) * 0.5 + 10)
    assert rad.pixels.min() < 0
    assert_marker(rad)

    # MONOCHROME1 with a rescale: inverted over the rescaled range, as ITK/GDCM does it
    rad = read_image(write_dicom(tmp_path / "m1r.dcm", arr, "MONOCHROME1", bits_stored=12, slope=2, intercept=-100))
    np.testing.assert_array_equal(rad.pixels, (-100 + 8090) - (arr.astype(np.float32) * 2 - 100))


def test_dicom_without_extension_uppercase_and_without_preamble(tmp_path):
    arr = image(np.uint16, 4000)
    for name in ("IM00001", "IMAGE.DCM", "scan with spaces"):
        rad = read_image(write_dicom(tmp_path / name, arr, bits_stored=12))
        np.testing.assert_array_equal(rad.pixels, arr)
        assert rad.spacing_mm == (0.2, 0.15)
    rad = read_image(write_dicom(tmp_path / "bare.dcm", arr, bits_stored=12, preamble=False))
    np.testing.assert_array_equal(rad.pixels, arr)
    assert_marker(rad)


def test_colour_dicom_becomes_gray(tmp_path):
    path = write_dicom(tmp_path / "sc.dcm", image(np.uint8, 250))
    ds = pydicom.dcmread(path)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = image(np.uint8, 250), 30
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = rgb.tobytes()
    ds.save_as(path)
    rad = read_image(path)
    np.testing.assert_allclose(rad.pixels, 0.299 * rgb[..., 0] + 0.114 * 30, rtol=1e-5)
    assert rad.was_colour and rad.colourfulness > 0.5 and "colour converted to gray" in rad.normalisation
    assert_marker(rad)


def test_compressed_dicom_and_the_gdcm_fallback_agree(tmp_path, monkeypatch):
    arr = image(np.uint16, 4000)
    path = tmp_path / "rle.dcm"
    write_dicom(path, arr, "MONOCHROME1", bits_stored=12, slope=2, intercept=-100)
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(path)
    expected = (-100 + 8090) - (arr.astype(np.float32) * 2 - 100)
    np.testing.assert_array_equal(read_image(path).pixels, expected)  # pydicom's own RLE decoder

    def no_decoder(self):
        raise NotImplementedError("no pixel data handler available")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    rad = read_image(path)  # SimpleITK/GDCM decodes, rescales and inverts
    np.testing.assert_array_equal(rad.pixels, expected)
    assert rad.spacing_mm == (0.2, 0.15) and "decoded by GDCM" in rad.normalisation


# --------------------------------------------------------------------------------------------
# NRRD and NIfTI

def sitk_image(arr, spacing_xyz):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing_xyz)
    return img


@pytest.mark.parametrize("ext", [".nrrd", ".nhdr", ".nii", ".nii.gz", ".NII.GZ"])
def test_itk_formats_single_slice_with_spacing(tmp_path, ext):
    arr = image(np.int16, 3000) - 500
    path = tmp_path / f"slice{ext}"
    written = tmp_path / f"written{ext.lower()}"  # ITK writes lower-case extensions only
    sitk.WriteImage(sitk_image(arr, (0.3, 0.4)), str(written))  # x (column) 0.3, y (row) 0.4
    if ext.endswith(".nhdr"):
        path = written  # the detached header names its data file
    written.rename(path)
    rad = read_image(path)
    np.testing.assert_array_equal(rad.pixels, arr)
    assert_marker(rad)
    assert rad.spacing_mm == (0.4, 0.3)
    assert rad.spacing_source == ("NRRD space directions" if "nrrd" in ext or "nhdr" in ext else "NIfTI pixdim")
    assert rad.bits == 16


@pytest.mark.parametrize("ext", [".nrrd", ".nii.gz"])
def test_3d_volume_with_one_slice_either_way(tmp_path, ext):
    arr = image(np.uint16, 3000)
    a = tmp_path / f"1xHxW{ext}"
    sitk.WriteImage(sitk_image(arr[None], (0.3, 0.4, 2.5)), str(a))  # numpy 1 x H x W
    rad = read_image(a)
    np.testing.assert_array_equal(rad.pixels, arr)
    assert rad.spacing_mm == (0.4, 0.3) and "single slice" in rad.normalisation
    b = tmp_path / f"HxWx1{ext}"
    sitk.WriteImage(sitk_image(arr[:, :, None], (2.5, 0.3, 0.4)), str(b))  # numpy H x W x 1
    rad = read_image(b)
    np.testing.assert_array_equal(rad.pixels, arr)
    assert rad.spacing_mm == (0.4, 0.3)
    assert_marker(rad)


def test_nrrd_written_by_pynrrd_spacings_and_no_spacing(tmp_path):
    arr = image(np.uint16, 3000)
    # header fields are in NRRD axis order (x fastest) whatever the index order of the array
    nrrd.write(str(tmp_path / "sp.nrrd"), arr, {"spacings": [0.125, 0.25]}, index_order="C")
    rad = read_image(tmp_path / "sp.nrrd")
    np.testing.assert_array_equal(rad.pixels, arr)
    assert rad.spacing_mm == (0.25, 0.125) and rad.spacing_source == "NRRD spacings"
    nrrd.write(str(tmp_path / "plain.nrrd"), arr, index_order="C")
    rad = read_image(tmp_path / "plain.nrrd")
    assert rad.spacing_mm is None and rad.spacing_source == ""
    assert_marker(rad)


def test_float_nrrd_and_nan_refused(tmp_path):
    arr = image(np.float32, 3000) / 7
    sitk.WriteImage(sitk_image(arr, (1.0, 1.0)), str(tmp_path / "f.nrrd"))
    np.testing.assert_array_equal(read_image(tmp_path / "f.nrrd").pixels, arr)
    arr[3, 3] = np.nan
    sitk.WriteImage(sitk_image(arr, (1.0, 1.0)), str(tmp_path / "nan.nrrd"))
    assert "not numbers" in message(tmp_path / "nan.nrrd")


# --------------------------------------------------------------------------------------------
# refusals

def test_missing_directory_empty(tmp_path):
    assert "not found" in message(tmp_path / "nothing here.png")
    assert "folder" in message(tmp_path)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    assert "empty (0 bytes)" in message(empty)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
@pytest.mark.parametrize("fraction", [0.5, 0.95])
def test_truncated_raster(tmp_path, ext, fraction):
    full = tmp_path / f"full{ext}"
    cv2.imwrite(str(full), np.random.default_rng(0).integers(0, 255, (H, W), dtype=np.uint8))
    data = full.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: int(len(data) * fraction)])
    assert "truncated" in message(cut)


def test_truncated_dicom_nrrd_nifti(tmp_path):
    data = write_dicom(tmp_path / "full.dcm", image(np.uint16, 4000)).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 3000])
    assert "truncated" in message(tmp_path / "cut.dcm")
    (tmp_path / "head.dcm").write_bytes(data[:200])  # the header cut off before the image
    assert "no image" in message(tmp_path / "head.dcm")
    for ext in (".nrrd", ".nii", ".nii.gz"):
        full = tmp_path / f"full{ext}"
        sitk.WriteImage(sitk_image(np.random.default_rng(0).random((H, W)).astype(np.float32), (1, 1)), str(full))
        data = full.read_bytes()
        (tmp_path / f"cut{ext}").write_bytes(data[: len(data) // 2])
        assert "truncated" in message(tmp_path / f"cut{ext}")


def test_text_files_are_not_images(tmp_path):
    (tmp_path / "notes.txt").write_text("patient list\nnothing to see\n")
    text = message(tmp_path / "notes.txt")
    assert "not an image file" in text and "patient list" in text
    (tmp_path / "fake.png").write_text("this is not a png")
    text = message(tmp_path / "fake.png")
    assert "named like a PNG file but is not one" in text and "text" in text
    (tmp_path / "fake.dcm").write_text("nor a dicom file, really, just some words")
    assert "named like a DICOM file but is not one (it contains text" in message(tmp_path / "fake.dcm")
    (tmp_path / "blob").write_bytes(bytes(range(256)) * 4)
    assert "not a recognised image format" in message(tmp_path / "blob")


@pytest.mark.parametrize("ext", [".nrrd", ".nii.gz"])
def test_3d_volume_refused(tmp_path, ext):
    path = tmp_path / f"ct{ext}"
    sitk.WriteImage(sitk.Image(64, 64, 120, sitk.sitkInt16), str(path))
    assert "is a 3D volume with 120 slices (64 x 64 x 120); this module needs a single 2D radiograph" in message(path)


def test_multipage_tiff_and_multiframe_dicom_refused(tmp_path):
    cv2.imwritemulti(str(tmp_path / "pages.tif"), [image()] * 4)
    assert "3D volume with 4 slices" in message(tmp_path / "pages.tif")
    frames = np.stack([image(np.uint16, 4000)] * 3)
    text = message(write_dicom(tmp_path / "mf.dcm", frames, frames=3))
    assert "multi-frame" in text and "3 slices" in text


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "sr.dcm", image(np.uint16, 4000))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    assert "no image" in message(path)


def test_too_large_is_refused_from_the_header_before_decoding(tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the header says it is too large")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)  # the reader imports OpenCV when it decodes
    monkeypatch.setattr(rg.sitk.ImageFileReader, "Execute", no_decoding)
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoding))
    cv2.imwrite(str(tmp_path / "big.png"), image())
    write_dicom(tmp_path / "big.dcm", image(np.uint16, 4000))
    sitk.WriteImage(sitk_image(image(), (1, 1)), str(tmp_path / "big.nrrd"))
    for name in ("big.png", "big.dcm", "big.nrrd"):
        text = message(tmp_path / name, max_pixels=5000)
        assert f"is {W} x {H} pixels (0.00768 megapixels); the limit is 0.005 megapixels" in text


def test_too_large_message_sizes(tmp_path):
    sitk.WriteImage(sitk.Image(12000, 11000, sitk.sitkUInt8), str(tmp_path / "huge.nrrd"))  # gzip: small file
    text = message(tmp_path / "huge.nrrd")
    assert "is 12000 x 11000 pixels (132 megapixels); the limit is 120 megapixels" in text


def test_too_small_and_constant(tmp_path):
    cv2.imwrite(str(tmp_path / "small.png"), image()[:40, :63])
    assert "only 63 x 40 pixels" in message(tmp_path / "small.png")
    cv2.imwrite(str(tmp_path / "flat.png"), np.full((H, W), 77, np.uint8))
    assert "blank: every pixel has the value 77" in message(tmp_path / "flat.png")
    rad = write_dicom(tmp_path / "flat.dcm", np.full((H, W), 300, np.uint16))
    assert "blank" in message(rad)


def test_input_files_are_never_modified(tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.nrrd", tmp_path / "d.nii.gz"]
    for p in paths[:2]:
        cv2.imwrite(str(p), image())
    for p in paths[2:]:
        sitk.WriteImage(sitk_image(image(), (0.5, 0.5)), str(p))
    paths.append(write_dicom(tmp_path / "e", image(np.uint16, 4000), "MONOCHROME1", bits_stored=12))
    before = {p: (hashlib.sha256(p.read_bytes()).hexdigest(), os.stat(p).st_mtime_ns) for p in paths}
    for p in paths:
        read_image(p)
    assert before == {p: (hashlib.sha256(p.read_bytes()).hexdigest(), os.stat(p).st_mtime_ns) for p in paths}
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(p.name for p in paths)


# --------------------------------------------------------------------------------------------
# arrays and display

def test_radiograph_from_array():
    arr = image(np.uint16, 3000)
    rad = image_from_array(arr, spacing_mm=(0.2, 0.1), source="mem")
    np.testing.assert_array_equal(rad.pixels, arr)
    assert rad.spacing_mm == (0.2, 0.1) and rad.bits == 16 and rad.source == "mem"
    assert_marker(image_from_array(arr[None]))
    assert_marker(image_from_array(arr[:, :, None]))
    rgb = np.dstack([image(), np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)])
    rad = image_from_array(rgb)  # RGB order for arrays
    np.testing.assert_allclose(rad.pixels, 0.299 * image().astype(np.float32), rtol=1e-6)
    assert rad.was_colour and rad.colourfulness == pytest.approx(1.0)
    with pytest.raises(ImageReadError, match="shape"):
        image_from_array(np.zeros((3, H, W)))
    with pytest.raises(ImageReadError, match="blank"):
        image_from_array(np.ones((H, W)))
    with pytest.raises(ValueError, match="spacing_mm"):
        image_from_array(arr, spacing_mm=(0.0, 1.0))


def test_windowed_uint8():
    arr = image(np.uint16, 60000).astype(np.float32)
    rad = image_from_array(arr)
    display = rad.windowed_uint8()
    assert display.dtype == np.uint8 and display.shape == (H, W)
    assert display[MARK] == 255 and display.min() == 0
    full = rad.windowed_uint8(0, 100)
    order = np.argsort(arr, axis=None, kind="stable")
    assert np.all(np.diff(full.reshape(-1)[order].astype(int)) >= 0)  # monotone in the intensity
