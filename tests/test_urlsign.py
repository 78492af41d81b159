"""URL signing against Google's documented example, and the ways a signature must fail."""

from __future__ import annotations

import pytest

from geotag.errors import InputError
from geotag.urlsign import sign_url, signature_for, verify

# Google's "Digital signature guide" example.
SECRET = "vNIXE0xscrmjlyV-12Nj_BvUPaw="
URL = "https://maps.googleapis.com/maps/api/geocode/json?address=New+York&client=clientID"
SIGNATURE = "chaRF2hTJKOScPr-RQCEhZbSzIE="
SIGNED_PATH = f"/maps/api/geocode/json?address=New+York&client=clientID&signature={SIGNATURE}"


def test_documented_example_signs_to_documented_signature() -> None:
    assert sign_url(URL, SECRET) == f"{URL}&signature={SIGNATURE}"
    assert signature_for("/maps/api/geocode/json?address=New+York&client=clientID", SECRET) == (
        SIGNATURE
    )


def test_documented_example_verifies() -> None:
    assert verify(SIGNED_PATH, SECRET)


def test_padding_may_arrive_percent_encoded() -> None:
    assert SIGNED_PATH.endswith("=")
    assert verify(SIGNED_PATH.removesuffix("=") + "%3D", SECRET)


def test_scheme_and_host_are_not_signed() -> None:
    other_host = URL.replace("https://maps.googleapis.com", "http://127.0.0.1:8080")
    assert sign_url(other_host, SECRET).endswith(f"&signature={SIGNATURE}")


@pytest.mark.parametrize(
    "target",
    [
        SIGNED_PATH.replace("New+York", "Boston"),  # query changed after signing
        SIGNED_PATH.replace("/geocode/", "/streetview/"),  # path changed after signing
        SIGNED_PATH.replace("chaRF2", "chaRF3"),  # signature changed
        "/maps/api/geocode/json?address=New+York&client=clientID",  # no signature
        f"/maps/api/geocode/json?address=New+York&signature={SIGNATURE}&client=clientID",
        SIGNED_PATH + "&extra=1",  # signature not last
        SIGNED_PATH + "&signature=",  # an empty second signature
    ],
)
def test_tampered_or_missing_signature_is_rejected(target: str) -> None:
    assert not verify(target, SECRET)


def test_wrong_secret_is_rejected() -> None:
    assert not verify(SIGNED_PATH, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")


def test_url_without_query_round_trips() -> None:
    signed = sign_url("http://127.0.0.1/maps/api/streetview", SECRET)
    path = signed.removeprefix("http://127.0.0.1")
    assert path.startswith("/maps/api/streetview?signature=")
    assert verify(path, SECRET)


def test_any_signed_url_verifies_over_its_path_and_query() -> None:
    url = "http://127.0.0.1:1/maps/api/streetview?size=640x640&location=12.97%2C77.59&key=K"
    signed = sign_url(url, SECRET)
    assert verify(signed.removeprefix("http://127.0.0.1:1"), SECRET)
    assert not verify(signed.removeprefix("http://127.0.0.1:1").replace("640x640", "64x64"), SECRET)


def test_unpadded_secret_gives_the_same_signature() -> None:
    assert signature_for("/x?a=1", SECRET.rstrip("=")) == signature_for("/x?a=1", SECRET)


@pytest.mark.parametrize(
    "secret", ["", "s3cr3t!with*junk", "abcde", "ab+/cdef", "vNIXE0xscrmjlyV-12Nj_BvUPaw==="]
)
def test_malformed_secret_is_an_input_error_that_hides_it(secret: str) -> None:
    for call in (
        lambda: sign_url(URL, secret),
        lambda: signature_for("/x?a=1", secret),
        lambda: verify(SIGNED_PATH, secret),
    ):
        with pytest.raises(InputError, match="signing secret is not url-safe base64") as info:
            call()
        if secret:
            assert secret not in str(info.value)
        assert info.value.__cause__ is None


def test_fragment_cannot_be_signed() -> None:
    with pytest.raises(InputError, match="fragment"):
        sign_url(URL + "#top", SECRET)
