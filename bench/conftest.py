"""pytest configuration of the benchmark suite: a header that says what runs."""

from .cases import CASES, SMOKE_ENV, smoke_mode
from .runners import torch_import_error


def pytest_report_header(config):
    sizes = f"smoke sizes ({SMOKE_ENV}=1)" if smoke_mode() else "full sizes"
    torch = torch_import_error() or "PyTorch column enabled"
    return [f"fastbp bench: {len(CASES)} cases, {sizes}; {torch}"]
