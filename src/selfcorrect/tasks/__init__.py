"""Tasks: problems, prompts and verifiers. `modroot` is the embedded default."""

from .base import Problem, Task
from .modroot import ModRootConfig, ModRootTask

__all__ = ["Problem", "Task", "ModRootConfig", "ModRootTask"]
