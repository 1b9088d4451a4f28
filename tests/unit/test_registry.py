import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.registry import Registry


def test_get_unknown_name_suggests_nearest_and_lists_all():
    registry: Registry[int] = Registry("metric")
    registry.add("contains", 1)
    registry.add("exact", 2)
    with pytest.raises(OpenRecipeError) as info:
        registry.get("contain")
    message = str(info.value)
    assert "did you mean 'contains'" in message
    assert "available: contains, exact" in message


def test_register_twice_is_a_bug():
    registry: Registry[int] = Registry("engine")
    registry.add("a", 1)
    with pytest.raises(ValueError):
        registry.add("a", 2)


def test_decorator_names_and_membership():
    registry: Registry[object] = Registry("thing")

    @registry.register("b")
    def b():
        return None

    assert registry.get("b") is b
    assert "b" in registry and "c" not in registry
    assert registry.names() == ["b"]
