"""The papers ftcot-hf cites, each once: the one it implements (cards, task metadata, datasets' DatasetInfo) and the
one whose recorded completions its text-davinci-002 teacher replays."""

PAPER_CITATION = """@inproceedings{ho-etal-2023-large,
    title = "Large Language Models Are Reasoning Teachers",
    author = "Ho, Namgyu and Schmid, Laura and Yun, Se-Young",
    booktitle = "Proceedings of the 61st Annual Meeting of the Association for Computational Linguistics
                 (Volume 1: Long Papers)",
    month = jul,
    year = "2023",
    address = "Toronto, Canada",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2023.acl-long.830",
    doi = "10.18653/v1/2023.acl-long.830",
    pages = "14852--14882",
}"""

# The recorded teacher (``--teacher text-davinci-002``) replays this paper's Zero-shot-CoT completions: a rationale
# dataset made from them cites it too.
KOJIMA_CITATION = """@inproceedings{kojima2022large,
    title = "Large Language Models are Zero-Shot Reasoners",
    author = "Kojima, Takeshi and Gu, Shixiang Shane and Reid, Machel and Matsuo, Yutaka and Iwasawa, Yusuke",
    booktitle = "Advances in Neural Information Processing Systems",
    volume = "35",
    pages = "22199--22213",
    year = "2022",
    url = "https://arxiv.org/abs/2205.11916",
}"""
