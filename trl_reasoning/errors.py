"""Errors a user can fix, shared by the recipe reader and the stages (one line naming the key)."""


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the key."""
