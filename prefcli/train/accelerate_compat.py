"""The one place prefcli touches a private accelerate API.

accelerate keeps its ``AcceleratorState`` and ``GradientState`` as process-wide singletons: a second
``Accelerator`` in the same process (two ``train`` calls, the segments of an online run, a test suite) reuses the
first one's settings unless the singletons are reset. accelerate offers no public call for this; its own tests use
the private ``_reset_state``. ``tests/test_train_run.py::test_accelerate_state_reset_adapter`` fails loudly if
an upgrade removes or changes it.
"""

from __future__ import annotations


def reset_accelerate_state() -> None:
    """Let a later ``train`` call in the same process build a fresh Accelerator (the process group stays)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()
