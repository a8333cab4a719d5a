"""The vocabulary every other core package speaks: Stage and the 30-s epoch grid, the AASM Rule
catalogue, Hypnogram, a model's parsed Answer (read by model, stored by study), stage
probabilities as stored and shown, the names of a suggested stage's
sources, plus two small mechanisms (the event emitter core models use
to be observed, durable file writes).

May import: the standard library, numpy, ``sleepvlm_ws.errors`` and ``sleepvlm_ws.paths``; no other
core package.
"""
