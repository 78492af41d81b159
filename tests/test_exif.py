"""EXIF reading: dates, headings and damaged tags."""

from __future__ import annotations

import io

import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from geotag.exif import ExifInfo, heading_degrees, iso_date, read_exif


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021:07:14 09:30:00", "2021-07-14"),
        ("2021-07-14T09:30", "2021-07-14"),
        ("2021-07", "2021-07"),
        ("2021", "2021"),
        ("0000:00:00 00:00:00", None),
        ("2021:13:01", None),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_iso_date(text: str | None, expected: str | None) -> None:
    assert iso_date(text) == expected


def test_heading_wraps_into_0_360() -> None:
    assert heading_degrees(370.0) == pytest.approx(10.0)
    assert heading_degrees(-90.0) == pytest.approx(270.0)
    assert heading_degrees(float("nan")) is None
    assert heading_degrees(None) is None


def _jpeg_with(gps: dict[int, object]) -> Image.Image:
    exif = Image.Exif()
    ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
    ifd.update(gps)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=exif.tobytes())
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_southern_western_coordinates_are_negative() -> None:
    image = _jpeg_with(
        {
            ExifTags.GPS.GPSLatitude: (IFDRational(33), IFDRational(52), IFDRational(4)),
            ExifTags.GPS.GPSLatitudeRef: "S",
            ExifTags.GPS.GPSLongitude: (IFDRational(151), IFDRational(12), IFDRational(36)),
            ExifTags.GPS.GPSLongitudeRef: "W",
        }
    )
    info = read_exif(image)
    assert info.lat == pytest.approx(-(33 + 52 / 60 + 4 / 3600))
    assert info.lon == pytest.approx(-(151 + 12 / 60 + 36 / 3600))


def test_a_zero_denominator_gives_no_position() -> None:
    image = _jpeg_with(
        {
            ExifTags.GPS.GPSLatitude: (IFDRational(1, 0), IFDRational(0), IFDRational(0)),
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLongitude: (IFDRational(10), IFDRational(0), IFDRational(0)),
            ExifTags.GPS.GPSLongitudeRef: "E",
        }
    )
    assert read_exif(image) == ExifInfo()
