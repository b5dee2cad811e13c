"""``python -m ketch.serving.modelserver``: one model server process (what each predictor Pod runs)."""

from ketch.serving.modelserver.server import main

if __name__ == "__main__":
    main()
