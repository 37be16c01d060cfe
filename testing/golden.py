"""The regression scenarios' built-in golden set: distinct topics, and paraphrased questions answered by one each."""

# ruff: noqa: E501  (one document or query per line reads best)
from __future__ import annotations

CORPUS: dict[str, str] = {
    "lighthouse": "A lighthouse keeper climbs the tower each evening to light the lamp that warns ships away from the rocky coast.",
    "sourdough": "Sourdough bread rises with a fermented starter of flour and water instead of commercial yeast, giving it a sour taste.",
    "volcano": "A volcano erupts when pressure from molten rock, gases and ash beneath the crust forces magma up through a vent.",
    "photosynthesis": "Plants turn sunlight, water and carbon dioxide into glucose and oxygen through photosynthesis in their leaves.",
    "chess": "In chess the king may castle with a rook once, if neither piece has moved and no square it crosses is attacked.",
    "marathon": "Runners preparing for a marathon build weekly mileage slowly and taper in the final weeks before the race.",
    "vaccine": "Vaccines train the immune system to recognise a pathogen by exposing it to a harmless piece or weakened form of it.",
    "glacier": "Glaciers are slow rivers of ice that carve valleys as they grind downhill under their own enormous weight.",
    "compost": "Garden compost turns kitchen scraps and leaves into rich soil as microbes break the organic matter down.",
    "telescope": "A reflecting telescope gathers faint starlight with a large curved mirror and focuses it onto an eyepiece or camera.",
    "bees": "Honey bees communicate where flowers are with a waggle dance whose angle and length encode direction and distance.",
    "espresso": "Espresso is brewed by forcing hot water at high pressure through finely ground, tightly packed coffee.",
    "tides": "Ocean tides rise and fall twice a day mostly because of the gravitational pull of the moon on the seas.",
    "bicycle": "Fixing a flat bicycle tyre means removing the wheel, patching or replacing the inner tube and pumping it up.",
    "origami": "Origami is the Japanese art of folding a single square of paper into figures such as cranes without cutting it.",
    "recycling": "Aluminium cans can be recycled endlessly; melting them down uses far less energy than making new metal from ore.",
    "jazz": "Jazz musicians improvise solos over chord changes, trading phrases and swinging the rhythm around the beat.",
    "password": "A strong password is long, unique for every site and best kept in a password manager with two-factor login.",
    "rainbow": "A rainbow appears when sunlight is refracted, reflected and dispersed inside raindrops, splitting into colours.",
    "penguins": "Emperor penguins huddle together through the Antarctic winter while the males keep the eggs warm on their feet.",
}

QUERIES: tuple[tuple[str, str], ...] = (
    ("who lights the lamp that keeps boats off the rocks", "lighthouse"),
    ("bread made with a fermented starter rather than yeast", "sourdough"),
    ("why does magma come out of a mountain", "volcano"),
    ("how do leaves make sugar from light", "photosynthesis"),
    ("rule for moving the king and rook together", "chess"),
    ("training plan before a long distance race", "marathon"),
    ("how immunisation teaches the body to fight germs", "vaccine"),
    ("moving ice that shapes valleys", "glacier"),
    ("turning food waste into soil", "compost"),
    ("instrument with a mirror to see distant stars", "telescope"),
    ("how do bees tell each other where the flowers are", "bees"),
    ("coffee made with pressurised hot water", "espresso"),
    ("what makes the sea level go up and down each day", "tides"),
    ("repairing a punctured bike wheel", "bicycle"),
    ("folding paper cranes", "origami"),
    ("reusing drink cans saves energy", "recycling"),
    ("improvised music over chords", "jazz"),
    ("how to keep login credentials safe", "password"),
    ("colours in the sky after rain", "rainbow"),
    ("birds that keep eggs warm during the polar winter", "penguins"),
)
