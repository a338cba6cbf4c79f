"""Worked examples: ``python -m prcm_examples.digits`` trains, ports and fine-tunes a PRCM CNN."""
