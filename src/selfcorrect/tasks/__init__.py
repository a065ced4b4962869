"""Tasks: problems, prompts and verifiers. `modroot` is the embedded default; `math` is MATH and GSM8K."""

from .base import Problem, Task
from .math import MathTask, MathTaskConfig, extract_answer, grade
from .modroot import ModRootConfig, ModRootTask

__all__ = ["Problem", "Task", "ModRootConfig", "ModRootTask", "MathTask", "MathTaskConfig", "extract_answer", "grade"]
