"""``python -m autosteer.streams.cli``: the ``autosteer`` command."""

from autosteer.streams.cli import main

if __name__ == "__main__":
    main()
