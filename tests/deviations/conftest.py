from tests.batches.conftest import plant  # noqa: F401  (the same small plant)
