import pytest

from mamba_site.origins import OriginError, origin_normalize, origins_parse


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://chat.example.com", "https://chat.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("HTTPS://Chat.Example.COM", "https://chat.example.com"),
        ("https://chat.example.com/", "https://chat.example.com"),
        ("https://chat.example.com:443", "https://chat.example.com"),
        ("http://chat.example.com:80", "http://chat.example.com"),
        ("http://chat.example.com:443", "http://chat.example.com:443"),
        ("https://chat.example.com:80", "https://chat.example.com:80"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("http://[2001:DB8:0:0::1]", "http://[2001:db8::1]"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("  https://chat.example.com  ", "https://chat.example.com"),
    ],
)
def test_origin_normalize_writes_the_origin_as_browsers_send_it(value, expected):
    assert origin_normalize(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "null",
        "*",
        "https://*.example.com",
        "chat.example.com",
        "//chat.example.com",
        "ftp://chat.example.com",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http:chat.example.com",
        "https://chat.example.com/app",
        "https://chat.example.com//",
        "https://chat.example.com?x=1",
        "https://chat.example.com?",
        "https://chat.example.com#top",
        "https://user:pass@chat.example.com",
        "https://user@chat.example.com",
        "https://chat.example.com:99999",
        "https://chat.example.com:0",
        "https://chat.example.com:port",
        "https://chat.example.com.",
        "https://chat_example.com",
        "https://-chat.example.com",
        "http://127.1",
        "http://300.1.1.1",
        "http://[::g]",
        "https://",
    ],
)
def test_origin_normalize_refuses_what_is_not_an_origin(value):
    with pytest.raises(OriginError):
        origin_normalize(value)


def test_origins_parse_takes_lines_and_commas_and_drops_repeats():
    text = "https://a.example\nhttps://b.example, https://a.example:443/"
    assert origins_parse(text) == ["https://a.example", "https://b.example"]


def test_origins_parse_names_every_bad_value():
    with pytest.raises(OriginError) as caught:
        origins_parse("https://a.example, null, https://b.example/path")
    assert "'null'" in str(caught.value)
    assert "'https://b.example/path'" in str(caught.value)
