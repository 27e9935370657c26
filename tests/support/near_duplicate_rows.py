"""Rows for the near-duplicate tests: a row, a reworded and re-punctuated copy of it, a different row."""

import json

SKY = {
    "instruction": "Explain why the sky is blue.",
    "output": "The sky looks blue because the molecules of the air scatter the short blue wavelengths of sunlight "
    "much more strongly than the longer red ones, so blue light reaches our eyes from every direction of the sky "
    "during the day.",
}
# Reworded (day -> daytime) and re-punctuated: the same example a second time.
SKY_AGAIN = {
    "instruction": "Explain, why the sky is blue?",
    "output": "The sky looks blue, because the molecules of the air scatter the short blue wavelengths of sunlight "
    "much more strongly than the longer red ones; so blue light reaches our eyes from every direction of the sky "
    "during the daytime!",
}
# Same opening, different question and answer: a different example.
SEA = {
    "instruction": "Explain why the sea is salty.",
    "output": "Rivers carry dissolved minerals from rocks into the sea, and when the water evaporates the salt stays "
    "behind, so over millions of years the salt has built up.",
}


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
