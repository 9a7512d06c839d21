"""ftcot_accuracy: the answer-parsing accuracy of Fine-tune-CoT (Ho et al., ACL 2023) as an `evaluate` module.

A thin wrapper: the logic is ftcot_hf.evaluation.compute_accuracy (evaluate 0.4 is in maintenance mode, so
nothing lives only here). evaluate copies this file into its module cache and checks its imports line by line,
hence one absolute import per line and ftcot_hf installed.
"""

import datasets
import evaluate

from ftcot_hf.evaluation.metric import compute_accuracy

_CITATION = """@inproceedings{ho-etal-2023-large,
    title = "Large Language Models Are Reasoning Teachers",
    author = "Ho, Namgyu and Schmid, Laura and Yun, Se-Young",
    booktitle = "Proceedings of the 61st Annual Meeting of the Association for Computational Linguistics",
    year = "2023",
    url = "https://aclanthology.org/2023.acl-long.830",
}
"""

_DESCRIPTION = """Accuracy of generated chain-of-thought completions: the answer is parsed out of each completion
with the task's parser (paper mode is bit-exact with the reference implementation) after the format's answer
prefix ('-->' for Fine-tune-CoT), and compared with the gold answer. Also reports contains_answer (any candidate
correct), correct_format (prefix present) and complete (generation ended by the stop phrase or EOS).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated completions, without the stop phrase.
    references (list of str): gold answers as in the task's `answer` column.
    task (str): one of the 12 tasks (coin_flip, multiarith, ...); default: the config name of the module.
    format (str): the prompt/completion format whose answer prefix applies: ft_cot (default, '-->'), vanilla,
        natural, zero_shot, zero_shot_cot, few_shot_cot, ... or None for no prefix.
    mode (str): 'paper' (default, bit-exact with the reference) or 'robust'.
    finish_reasons (list of str, optional): 'stop' / 'eos' / 'length' per prediction, for `complete`.
    return_details (bool): add `details`, one dict per prediction (prediction, candidates, correct, ...).
Returns:
    accuracy, contains_answer, correct_format, complete (fractions; complete is None without finish_reasons),
    n, and task/format/prefix/mode.
Examples:
    >>> metric = evaluate.load("path/to/ftcot_hf/metrics/ftcot_accuracy")
    >>> metric.compute(predictions=[" The coin was flipped. --> no "], references=["no"], task="coin_flip")["accuracy"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FtcotAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://github.com/itsnamgyu/reasoning-teacher"],
        )

    def _compute(
        self,
        predictions,
        references,
        task=None,
        format="ft_cot",
        mode="paper",
        finish_reasons=None,
        return_details=False,
    ):
        if task is None:
            if self.config_name in (None, "", "default"):
                raise ValueError(
                    "ftcot_accuracy needs the task: compute(..., task='coin_flip') or evaluate.load(path, 'coin_flip')"
                )
            task = self.config_name
        return compute_accuracy(
            predictions,
            references,
            task=task,
            format=format,
            mode=mode,
            finish_reasons=finish_reasons,
            return_details=return_details,
        )
