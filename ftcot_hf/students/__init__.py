"""The student: a model loaded from a Hub id, a folder or a GGUF file (:mod:`~ftcot_hf.students.loading`), the
prompt/completion formats it is trained and asked in (:mod:`~ftcot_hf.students.formats`), its generation loop that
stops at END (:mod:`~ftcot_hf.students.generation`, with the evaluation defaults it reads:
:mod:`~ftcot_hf.students.defaults`) and a layer-dropped smaller copy (:mod:`~ftcot_hf.students.shrink`).

It sits below the teachers (the transformers teacher generates with the same loop) and the stages that train and
evaluate students. Nothing is imported here: ``import ftcot_hf.students.formats`` loads no model library.
"""
