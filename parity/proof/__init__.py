"""The proof that torch and Flax compute the same numbers: float64 references
(:mod:`parity.proof.reference`), the module sweep (:mod:`parity.proof.check`), whole-network
parity (:mod:`parity.proof.networks`) with each layer's own error beside it
(:mod:`parity.proof.operations`), and the two tools a comparison needs: one dropout mask on
both sides (:func:`~parity.proof.dropout.shared_dropout_mask`) and full-precision float32 matmuls
(:func:`~parity.proof.precision.pinned_precision`).

Built on the converters (:mod:`parity`), never the other way round: converting a model imports
none of this. ``python -m parity`` runs it.
"""
