from __future__ import annotations

import types

import rehook_sdk
import rehook_sdk.testing


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and names every public attribute, and nothing private."""
    public = {
        name
        for name, value in vars(rehook_sdk).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    public |= {"__version__"}
    public -= {"version", "PackageNotFoundError"}
    assert sorted(rehook_sdk.__all__, key=_isort_style) == rehook_sdk.__all__
    assert set(rehook_sdk.__all__) == public


def _isort_style(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then the rest.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_exported_names_come_from_the_package() -> None:
    """Every exported class lives in rehook_sdk (no leaked third-party names)."""
    for name in rehook_sdk.__all__:
        value = getattr(rehook_sdk, name)
        if isinstance(value, type):
            assert value.__module__.startswith("rehook_sdk"), name


def test_testing_all_is_sorted() -> None:
    """The testing helpers have a sorted __all__ too."""
    assert sorted(rehook_sdk.testing.__all__, key=_isort_style) == rehook_sdk.testing.__all__


def test_version_is_a_string() -> None:
    """__version__ comes from the installed metadata."""
    assert isinstance(rehook_sdk.__version__, str)
    assert rehook_sdk.__version__ != "0.0.0"
