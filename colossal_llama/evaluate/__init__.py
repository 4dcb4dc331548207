"""Multiple-choice benchmark evaluation (MMLU, CMMLU and JSONL quizzes) by log-likelihood.

    from colossal_llama.evaluate import evaluate_model, read_tasks
    results = evaluate_model("runs/demo/stages/05-sft/model", ["mmlu/data/test"], shots=5)

    python -m colossal_llama.evaluate --model DIR --tasks mmlu/data/test --shots 5 --output runs/eval

Modules: `tasks` reads and checks task files, `prompts` renders prompts and
continuations and tokenizes them, `scoring` runs them packed (the question's
context once, each continuation attending to it), `run` turns scores into
accuracies, `__main__` is the command line. Like the rest of the package,
importing it does not import torch.
"""

from colossal_llama.evaluate.run import evaluate_model
from colossal_llama.evaluate.tasks import Question, read_tasks

__all__ = ["Question", "evaluate_model", "read_tasks"]
