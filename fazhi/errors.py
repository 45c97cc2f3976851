"""The one exception type users see: a bad input, named, with what is wrong."""


class FazhiError(Exception):
    """A user-facing error: ``str(err)`` is one line naming the input and the problem."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class LimitError(FazhiError):
    """An input over a size limit (the API answers 413): ``problem`` names the limit and its variable."""
