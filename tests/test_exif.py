"""EXIF reading: dates, headings and damaged tags."""

from __future__ import annotations

import io

import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from geotag.exif import BadValue, ExifInfo, checked_date, heading_degrees, iso_date, read_exif


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
    assert heading_degrees(720) == 0.0 and heading_degrees(-360.0) == 0.0
    assert heading_degrees(" 90.5 ") == 90.5  # text from a CSV
    assert heading_degrees(float("nan")) is None
    assert heading_degrees(None) is None
    assert heading_degrees("  ") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1e308, "1e+308 is not between -360 and 720 degrees"),  # 1e308 % 360 was 296.0
        ("1e308", "'1e308' is not between -360 and 720 degrees"),
        (float("inf"), "inf is not between -360 and 720 degrees"),
        ("-inf", "'-inf' is not between -360 and 720 degrees"),
        (-400.0, "-400 is not between -360 and 720 degrees"),
        ("abc", "'abc' is not a number"),  # was NaN, silently
        ([90], "[90] is not a number"),
    ],
)
def test_heading_that_is_no_sane_number_is_refused(value: object, message: str) -> None:
    with pytest.raises(BadValue) as caught:
        heading_degrees(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021:07:14 09:30:00", "2021-07-14"),
        ("0000:00:00 00:00:00", None),  # the cameras' "no date"
        ("    :  :     :  :  ", None),  # EXIF's "unknown", in spaces
        ("", None),
        (None, None),
    ],
)
def test_checked_date_tells_no_date_from_a_bad_one(text: str | None, expected: str | None):
    assert checked_date(text) == expected


@pytest.mark.parametrize("text", ["2020-13-45", "2021:02:30 10:00:00", "14/07/2021", "soon"])
def test_checked_date_refuses_text_that_is_no_date(text: str) -> None:
    with pytest.raises(BadValue, match=r"^'.+' is not a date; write YYYY-MM-DD$"):
        checked_date(text)


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


def _position(lat_ref: object, lon_ref: object) -> dict[int, object]:
    tags: dict[int, object] = {
        ExifTags.GPS.GPSLatitude: (IFDRational(12), IFDRational(30), IFDRational(0)),
        ExifTags.GPS.GPSLongitude: (IFDRational(77), IFDRational(15), IFDRational(0)),
    }
    if lat_ref is not None:
        tags[ExifTags.GPS.GPSLatitudeRef] = lat_ref
    if lon_ref is not None:
        tags[ExifTags.GPS.GPSLongitudeRef] = lon_ref
    return tags


@pytest.mark.parametrize(
    ("lat_ref", "lon_ref", "problem"),
    [
        ("Q", "E", "bad GPS reference 'Q'; latitude needs N or S"),  # was taken as N
        ("N", "Z", "bad GPS reference 'Z'; longitude needs E or W"),  # was taken as E
        ("E", "N", "bad GPS reference 'E'; latitude needs N or S"),  # swapped
        (None, "E", "no GPS reference; latitude needs N or S"),
    ],
)
def test_a_hemisphere_reference_other_than_n_s_e_w_gives_no_position_and_says_why(
    lat_ref: str | None, lon_ref: str, problem: str
) -> None:
    info = read_exif(_jpeg_with(_position(lat_ref, lon_ref)))
    assert info.lat is None and info.lon is None
    assert info.position_problem == problem


def test_lower_case_references_are_read() -> None:
    info = read_exif(_jpeg_with(_position("s", "w")))
    assert info.lat == pytest.approx(-12.5) and info.lon == pytest.approx(-77.25)
    assert info.position_problem is None


def test_a_damaged_heading_or_date_is_named_not_guessed() -> None:
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSImgDirection] = IFDRational(4294967295)
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2020:13:45 10:00:00"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=exif.tobytes())

    info = read_exif(Image.open(io.BytesIO(buffer.getvalue())))

    assert info.heading is None and info.captured is None
    assert info.heading_problem == "4.29497e+09 is not between -360 and 720 degrees"
    assert info.date_problem == "'2020:13:45 10:00:00' is not a date; write YYYY-MM-DD"
