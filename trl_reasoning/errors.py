"""Errors a user can fix, shared by the recipe reader and the stages (one line naming the key)."""


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the key."""


# Settings renamed so that one concept has one name (samples per question: TRL's num_generations).
RENAMED = {"num_samples": "num_generations", "eval_num_samples": "eval_num_generations",
           "num_rollouts": "mc_rollouts"}


def renamed_hint(name: str) -> str:
    """``" (renamed: use 'new')"`` for a setting's former name, else ``""``."""
    new = RENAMED.get(name.replace("-", "_"))
    return f" (renamed: use '{new}')" if new else ""
