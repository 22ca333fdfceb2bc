"""``tertiary.plugins.load_object``: "module:attribute" strings with one-line errors."""

import pytest

from tertiary.errors import ConfigError, InputError
from tertiary.plugins import load_object


def test_loads_the_named_attribute() -> None:
    assert load_object("tertiary.plugins:load_object", "x", ConfigError) is load_object


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tertiary.plugins", "not of the form module:attribute"),
        ("tertiary.no_such_module:f", "thing cannot be imported (tertiary.no_such_module"),
        ("tertiary.plugins:nope", "'tertiary.plugins' has no 'nope'"),
    ],
)
def test_errors_name_the_part_that_failed(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=None) as info:
        load_object(spec, "thing", InputError)
    assert message in str(info.value) and "\n" not in str(info.value)
