"""Tasks: problems, prompts and verifiers.

`modroot` is the embedded default; `math` is MATH and GSM8K; `code` is MBPP, HumanEval and MBPP-R.
"""

from .base import Problem, Task
from .code import CodeProblem, CodeTask, CodeTaskConfig, RepairItem, evaluate_repair, mbpp_repair
from .math import MathTask, MathTaskConfig, extract_answer, grade
from .modroot import ModRootConfig, ModRootTask

__all__ = ["Problem", "Task", "ModRootConfig", "ModRootTask", "MathTask", "MathTaskConfig", "extract_answer", "grade",
           "CodeProblem", "CodeTask", "CodeTaskConfig", "RepairItem", "evaluate_repair", "mbpp_repair"]
