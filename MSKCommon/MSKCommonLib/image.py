"""Reading a 2D image (a radiograph, or a photo for the back module) from PNG, JPEG, TIFF, DICOM,
NRRD or NIfTI: the one reader for files.

Every front end reads its input through ``read_image`` (a file), ``image_from_array`` (pixels in
memory) or ``MSKCommonLib.mrml.image_from_volume`` (a Slicer volume node, with the same rules)
and gets an ``Image``: float32 gray pixels, rows = y down, columns = x right, in the file's own
intensity units (DICOM rescale applied, MONOCHROME1 inverted so bone is bright, colour converted
to gray with luminance weights), the colour pixels when the file had colour channels (``rgb``,
what the back module measures), the pixel spacing in mm when the file states it, and a line
saying what was done. Anything that is not a usable 2D image raises ``ImageReadError`` with one
message naming the file, what was found and what is expected.

Pixels are kept in the file's index order (no reorientation from NIfTI/NRRD direction matrices,
no EXIF rotation of JPEGs), as Slicer lays out the voxels. PNG/JPEG/TIFF resolution tags (DPI)
are print settings, not detector spacing, so those formats give ``spacing_mm=None``.
No torch and no Slicer imports here; OpenCV is imported only to decode PNG, JPEG and TIFF files, so
these rules also run in Slicer's own Python before OpenCV is installed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

MIN_SIDE = 64
FORMATS = "PNG, JPEG, TIFF, DICOM, NRRD or NIfTI"
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
          b"NRRD": "NRRD"}
_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
               ".dcm": "DICOM", ".dicom": "DICOM", ".nrrd": "NRRD", ".nhdr": "NRRD", ".nii": "NIfTI",
               ".nii.gz": "NIfTI"}
_LUMA_RGB = (0.299, 0.587, 0.114)
_ITK_IO = {"PNG": "PNGImageIO", "JPEG": "JPEGImageIO", "TIFF": "TIFFImageIO", "NRRD": "NrrdImageIO",
           "NIfTI": "NiftiImageIO"}  # chosen from the content, not the extension


class ImageReadError(ValueError):
    """The file (or array) is not a usable 2D image; the message says why, for the user."""


@dataclass
class Image:
    pixels: np.ndarray  # float32, H x W, rows = y down, columns = x right (gray)
    spacing_mm: tuple[float, float] | None  # (row, column) = (y, x) spacing in mm; None if unknown
    source: str
    bits: int  # 8 or 16 (16 for anything stored wider than 8 bits)
    normalisation: str
    was_colour: bool = False  # stored with colour channels (RGB/RGBA), even if they were equal
    colourfulness: float = 0.0  # mean HSV saturation (0..1) of the original colour image
    spacing_source: str = ""
    rgb: np.ndarray | None = None  # uint8 H x W x 3 when the file had colour channels (else None)

    @property
    def name(self) -> str:
        """The file name (or the source text) for messages."""
        return Path(self.source).name if self.source and not self.source.startswith("<") else self.source

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def windowed_uint8(self, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
        """Display image: the [low_pct, high_pct] percentile window mapped to 0..255."""
        step = max(1, int(np.sqrt(self.pixels.size / 4e6)))  # percentiles from <= ~4 M pixels
        low, high = np.percentile(self.pixels[::step, ::step], [low_pct, high_pct])
        if high <= low:
            low, high = float(self.pixels.min()), float(self.pixels.max())
        if high <= low:
            return np.zeros(self.pixels.shape, np.uint8)
        out = (self.pixels - np.float32(low)) * np.float32(255.0 / (high - low))
        return (np.clip(out, 0, 255) + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# public entry points

def read_image(path, *, max_pixels: int = 120_000_000) -> Image:
    """Read one 2D image; raise ``ImageReadError`` (one clear message) for anything else."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"Image file not found: '{path}'")
    if p.is_dir():
        raise ImageReadError(f"'{path}' is a folder, not an image file; expected one {FORMATS} file "
                             "(load a DICOM series with Slicer's DICOM module)")
    if p.stat().st_size == 0:
        raise ImageReadError(f"'{path}' is empty (0 bytes); expected a {FORMATS} image")
    try:
        with open(p, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise ImageReadError(f"'{path}' could not be opened: {e.strerror}") from e
    fmt = _detect_format(p, head, str(path))
    if fmt == "DICOM":
        return _read_dicom(p, str(path), head, max_pixels)
    return _read_with_itk(p, str(path), fmt, max_pixels)


def image_from_array(pixels, spacing_mm=None, source: str = "<array>", spacing_source: str = "") -> Image:
    """An ``Image`` from an array: H x W gray, H x W x 3/4 (RGB/RGBA), or H x W x 1 / 1 x H x W."""
    arr = np.asarray(pixels)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[2]) and arr.shape[2] not in (3, 4):
        arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:2])
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageReadError(f"{source} has shape {arr.shape}; expected a 2D gray image (H x W) "
                             "or an RGB(A) image (H x W x 3 or 4)")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "uif":
        raise ImageReadError(f"{source} has pixel type {arr.dtype}; expected integer or float pixels")
    spacing = _valid_spacing(spacing_mm)
    if spacing_mm is not None and spacing is None:
        raise ValueError(f"spacing_mm must be two positive finite numbers (row, column), got {spacing_mm!r}")
    bits = 8 if arr.dtype.itemsize == 1 else 16
    return _finish(arr, spacing, source, bits, f"{bits}-bit array ({arr.dtype})",
                   spacing_source=(spacing_source or "given") if spacing else "")


# --------------------------------------------------------------------------------------------
# format detection and the readers

def sniff_format(p: Path, head: bytes) -> str:
    """The format from the content (DICM preamble, magic numbers), else from the extension; ""
    when neither says."""
    if head[128:132] == b"DICM":
        return "DICOM"
    for magic, fmt in _MAGIC.items():
        if head.startswith(magic):
            return fmt
    name = p.name.lower()
    return _EXTENSIONS.get(".nii.gz" if name.endswith(".nii.gz") else p.suffix.lower(), "")


def _detect_format(p: Path, head: bytes, source: str) -> str:
    """The format from the content (DICM preamble, magic numbers), else from the extension."""
    if head[128:132] == b"DICM" or any(head.startswith(magic) for magic in _MAGIC):
        return sniff_format(p, head)
    name = p.name.lower()
    ext = ".nii.gz" if name.endswith(".nii.gz") else p.suffix.lower()
    if head[344:348] in (b"n+1\x00", b"ni1\x00"):
        if ext not in (".nii", ".hdr"):
            raise ImageReadError(f"'{source}' is a NIfTI image without the .nii extension; rename it to *.nii")
        return "NIfTI"
    fmt = _EXTENSIONS.get(ext)
    if fmt == "DICOM" or (fmt == "NIfTI" and ext == ".nii.gz" and head.startswith(b"\x1f\x8b")):
        return fmt  # DICOM without the 128-byte preamble; gzipped NIfTI
    found = _describe(head)
    if fmt:
        raise ImageReadError(f"'{source}' is named like a {fmt} file but is not one ({found})")
    raise ImageReadError(f"'{source}' is not an image file this module can read ({found}); expected {FORMATS}")


def _describe(head: bytes) -> str:
    try:
        text = head.decode("utf-8")
        if text and sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text):
            return f"it contains text starting {text[:40].strip()!r}"
    except UnicodeDecodeError:
        pass
    return "its content is not a recognised image format"


def _read_with_itk(p: Path, source: str, fmt: str, max_pixels: int) -> Image:
    """PNG/JPEG/TIFF (decoded by OpenCV) and NRRD/NIfTI (by SimpleITK); header checked first."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    reader.SetImageIO(_ITK_IO[fmt])
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise ImageReadError(f"'{source}' could not be read as {fmt}: the file is damaged or truncated") from e
    size = reader.GetSize()  # ITK order: x (columns), y (rows), z ...
    keep = [i for i, n in enumerate(size) if n > 1]
    if len(keep) > 2:
        slices = int(np.prod(size[2:]))
        raise ImageReadError(f"'{source}' is a {len(size)}D volume with {slices} slices "
                             f"({' x '.join(map(str, size))}); this module needs a single 2D radiograph")
    keep = keep if len(keep) == 2 else [0, 1]
    width, height = size[keep[0]], size[keep[1]]
    _check_not_too_large(source, width, height, max_pixels)

    if fmt in ("PNG", "JPEG", "TIFF"):
        import cv2

        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            arr = cv2.imdecode(np.fromfile(str(p), np.uint8), cv2.IMREAD_UNCHANGED)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if arr is None or arr.shape[:2] != (height, width):
            raise ImageReadError(f"'{source}' could not be decoded as {fmt} ({width} x {height} pixels in "
                                 "its header): the file is truncated or damaged")
        if arr.ndim == 3:  # OpenCV gives BGR(A); make it RGB(A)
            arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]] if arr.shape[2] >= 3 else arr[:, :, 0]
        bits = 8 if arr.dtype.itemsize == 1 else 16
        return _finish(arr, None, source, bits, f"{bits}-bit {fmt}")

    if fmt == "NIfTI" and not _nifti_complete(p, reader):  # ITK would zero-fill the missing part
        raise ImageReadError(f"'{source}' could not be read as NIfTI: the file is truncated")
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise ImageReadError(f"'{source}' could not be read as {fmt}: the file is truncated or damaged") from e
    arr = sitk.GetArrayFromImage(image)
    components = image.GetNumberOfComponentsPerPixel()
    arr = arr.reshape((height, width) + ((components,) if components > 1 else ()))
    spacing_xyz = image.GetSpacing()
    spacing = (spacing_xyz[keep[1]], spacing_xyz[keep[0]])
    spacing_source = _itk_spacing_source(p, reader, fmt)
    if fmt == "NIfTI":  # stored as float32: report the decimal that was written (0.3, not 0.30000001)
        spacing = tuple(float(str(np.float32(s))) for s in spacing)
    spacing = _valid_spacing(spacing) if spacing_source else None
    bits = 8 if arr.dtype.itemsize == 1 else 16
    note = f"{bits}-bit {fmt}" + ("" if len(size) == 2 else f", single slice of a {' x '.join(map(str, size))} volume")
    return _finish(arr, spacing, source, bits, note, spacing_source=spacing_source if spacing else "")


def _itk_spacing_source(p: Path, reader, fmt: str) -> str:
    """Whether the header really states the spacing (ITK reports 1.0 when it does not)."""
    if fmt == "NRRD":
        with open(p, "rb") as f:
            header = f.read(65536).replace(b"\r\n", b"\n").split(b"\n\n")[0].decode("latin-1").lower()
        fields = {line.split(":")[0].strip() for line in header.splitlines()}
        return next((f"NRRD {k}" for k in ("space directions", "spacings") if k in fields), "")
    units = int(reader.GetMetaData("xyzt_units")) if reader.HasMetaDataKey("xyzt_units") else 0
    if units & 7 == 0 and all(s == 1.0 for s in reader.GetSpacing()):
        return ""  # no spatial unit and unit pixdim: the writer did not know the spacing
    return "NIfTI pixdim"


def _nifti_complete(p: Path, reader) -> bool:
    """Whether a single-file NIfTI holds all the voxel bytes its header announces."""
    meta = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    if meta.get("nifti_type") != "1":  # not a single .nii file
        return True
    voxels = int(np.prod([int(meta[f"dim[{i}]"]) for i in range(1, int(meta["dim[0]"]) + 1)]))
    expected = int(float(meta["vox_offset"])) + voxels * int(meta["bitpix"]) // 8
    with open(p, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if not gzipped:
        return p.stat().st_size >= expected
    import gzip

    available = 0
    try:
        with gzip.open(p, "rb") as f:
            while available < expected and (chunk := f.read(1 << 24)):
                available += len(chunk)
    except (OSError, EOFError):
        return False
    return available >= expected


def _read_dicom(p: Path, source: str, head: bytes, max_pixels: int) -> Image:
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    has_preamble = head[128:132] == b"DICM"
    try:  # pixel data deferred: read only when the header has been checked
        ds = pydicom.dcmread(str(p), force=not has_preamble, defer_size="1 MB")
    except Exception as e:
        raise ImageReadError(f"'{source}' could not be read as DICOM: the file is damaged or truncated ({e})") from e
    if not has_preamble and "PixelData" not in ds:  # named .dcm and read by force: likely not DICOM
        raise ImageReadError(f"'{source}' is named like a DICOM file but is not one ({_describe(head)})")
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        raise ImageReadError(f"'{source}' has no image in it (no DICOM Pixel Data): it is truncated, or a "
                             "DICOM object that is not an image (report, directory)")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise ImageReadError(f"'{source}' is a multi-frame DICOM (a 3D volume or cine) with {frames} slices; "
                             "this module needs a single 2D radiograph")
    _check_not_too_large(source, int(ds.Columns), int(ds.Rows), max_pixels)
    if "TransferSyntaxUID" not in ds.file_meta:  # a bare dataset without file meta information
        implicit = (getattr(ds, "original_encoding", None) or (True, True))[0]
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    syntax = ds.file_meta.TransferSyntaxUID
    bits_stored = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    bits = 8 if bits_stored <= 8 else 16
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    notes = [f"{bits}-bit DICOM"]
    try:
        arr = ds.pixel_array
    except Exception as e:
        if not syntax.is_compressed:
            raise ImageReadError(f"'{source}' could not be decoded as DICOM: the pixel data is truncated or "
                                 f"damaged ({e})") from e
        try:  # a compression pydicom has no decoder for here: GDCM inside SimpleITK decodes it and
            # applies the rescale and the MONOCHROME1 inversion itself
            arr = sitk.GetArrayFromImage(sitk.ReadImage(str(p)))[0]
        except RuntimeError:
            raise ImageReadError(f"'{source}' uses a DICOM compression ({syntax.name}) that could not be "
                                 "decoded") from e
        notes.append(f"{syntax.name} decoded by GDCM" + (", MONOCHROME1 inverted" if photometric == "MONOCHROME1" else ""))
    else:
        arr, notes = _dicom_intensities(ds, arr, photometric, bits_stored, notes)
    spacing, spacing_source = dicom_spacing(ds)
    return _finish(arr, spacing, source, bits, ", ".join(notes), spacing_source=spacing_source)


def dicom_spacing(ds) -> tuple:
    """(row, column) spacing in mm and the attribute it came from: PixelSpacing, else
    ImagerPixelSpacing, else NominalScannedPixelSpacing; (None, "") when none is usable."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2 and _valid_spacing(value):
            return _valid_spacing(value), keyword
    return None, ""


def dicom_value_range(ds) -> tuple[float, float]:
    """The range of modality values the stored bits can hold (after the rescale), which a
    MONOCHROME1 image is inverted over: value -> low + high - value."""
    bits_stored = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    lo, hi = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2 ** bits_stored - 1)
    slope = float(ds.get("RescaleSlope") or 1.0)
    intercept = float(ds.get("RescaleIntercept") or 0.0)
    return tuple(sorted((lo * slope + intercept, hi * slope + intercept)))


def _dicom_intensities(ds, arr, photometric, bits_stored, notes):
    """Modality rescale (slope/intercept or LUT), then MONOCHROME1 inverted over its value range."""
    lo, hi = dicom_value_range(ds)
    if arr.ndim == 3:  # colour: pydicom already gives RGB
        return arr, notes
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        arr = apply_modality_lut(arr, ds).astype(np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        notes.append("modality LUT applied")
    else:
        slope = float(ds.get("RescaleSlope") or 1.0)
        intercept = float(ds.get("RescaleIntercept") or 0.0)
        if (slope, intercept) != (1.0, 0.0):
            arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
            notes.append(f"rescaled (slope {slope:g}, intercept {intercept:g})")
    if photometric == "MONOCHROME1":
        arr = np.float32(lo + hi) - arr.astype(np.float32)
        notes.append("MONOCHROME1 inverted")
    return arr, notes


# --------------------------------------------------------------------------------------------
# shared checks and conversion

def _check_not_too_large(source: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageReadError(f"'{source}' is {width} x {height} pixels ({width * height / 1e6:.3g} megapixels); "
                             f"the limit is {max_pixels / 1e6:.3g} megapixels")


def _valid_spacing(value):
    try:
        spacing = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    ok = len(spacing) == 2 and all(np.isfinite(s) and s > 0 for s in spacing)
    return spacing if ok else None


def _finish(arr, spacing, source, bits, note, spacing_source="") -> Image:
    """Colour to gray, float32, then the checks every image must pass."""
    was_colour, colourfulness, rgb8 = False, 0.0, None
    if arr.ndim == 3:  # RGB or RGBA
        rgb = arr[:, :, :3]
        rgb8 = rgb if rgb.dtype == np.uint8 else (np.clip(rgb.astype(np.float64) / 257.0, 0, 255) + 0.5).astype(np.uint8)
        step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 1e6)))  # estimated on <= ~1 M pixels
        sample = rgb[::step, ::step].astype(np.float32)
        high, low = sample.max(axis=2), sample.min(axis=2)
        saturation = np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)
        colourfulness = float(saturation.mean())
        was_colour = True
        note += ", colour converted to gray" if colourfulness > 0 else ", RGB with equal channels taken as gray"
        note += ", alpha channel ignored" if arr.shape[2] == 4 else ""
        arr = rgb[:, :, 0] * np.float32(_LUMA_RGB[0])
        arr += rgb[:, :, 1] * np.float32(_LUMA_RGB[1])
        arr += rgb[:, :, 2] * np.float32(_LUMA_RGB[2])
    pixels = np.ascontiguousarray(arr, dtype=np.float32)
    height, width = pixels.shape
    if min(height, width) < MIN_SIDE:
        raise ImageReadError(f"'{source}' is only {width} x {height} pixels; an image needs at least "
                             f"{MIN_SIDE} pixels on each side")
    if not np.isfinite(pixels).all():
        raise ImageReadError(f"'{source}' has {int((~np.isfinite(pixels)).sum())} pixels that are not numbers "
                             "(NaN or infinite); expected finite intensities")
    low, high = float(pixels.min()), float(pixels.max())
    if low == high:
        raise ImageReadError(f"'{source}' is blank: every pixel has the value {low:g}; expected a radiograph or a photo")
    return Image(pixels, spacing, source, bits, note, was_colour, colourfulness, spacing_source,
                 None if rgb8 is None else np.ascontiguousarray(rgb8))
