"""vLLM 0.32's request errors: a refused request is a ``VLLMClientError``, not a ``ValueError``."""


class VLLMError(Exception):
    pass


class VLLMClientError(VLLMError):
    pass


class VLLMValidationError(VLLMClientError):
    pass
