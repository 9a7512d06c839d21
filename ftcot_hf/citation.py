"""The paper ftcot-hf implements, cited once (cards, task metadata, datasets' DatasetInfo)."""

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
