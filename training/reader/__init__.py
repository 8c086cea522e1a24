"""Train qabot's span reader on SQuAD: `python -m training.reader` (see README.md beside this file)."""
