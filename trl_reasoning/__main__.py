"""``python -m trl_reasoning`` and ``accelerate launch -m trl_reasoning`` enter the CLI here."""

from .cli import main

if __name__ == "__main__":
    main()
