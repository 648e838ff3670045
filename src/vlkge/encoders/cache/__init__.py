"""The on-disk feature cache written by ``vlkge encode`` and read by the multimodal model.

A cache folder holds, per modality (``text``, ``image``):

- ``<modality>.safetensors``: tensors ``features`` (float32 ``[n, w]``), ``valid`` (bool ``[n]``,
  False where an entity had inputs but none was usable, e.g. every image missing) and ``used``
  (int32 ``[n]``, how many texts/images were averaged); its metadata names the rows
  (``entities``, JSON list), their input fingerprints (``inputs``), the encoder, its weights
  fingerprint and preprocessing, and failed inputs per entity;
- ``<modality>.json``: the same description for people (encoder, fingerprint, preprocessing,
  width, counts, failed inputs per entity).

An entity's input fingerprint is the sha256 of its texts, or of its image files' bytes. A row is
reused while the encoder's weights fingerprint, its preprocessing and the entity's input
fingerprint are unchanged; a changed encoder invalidates the whole modality. New rows are first
written as shards (``<modality>.part-NNNNNN.safetensors``), so an interrupted run resumes where
it stopped; the shards are merged into the main file at the end. Every file is written whole or
not at all (:func:`vlkge.files.atomic_write`).

The text features of zero-shot prompts (:mod:`vlkge.evaluation.zero_shot`) live beside them in
``prompts.safetensors`` / ``prompts.json``, a table of the same format whose rows are named by
the exact prompt text and keyed by the encoder like a modality: each run adds the prompts it
encoded as a shard, and the next run merges the shards and encodes only prompts never seen.

Every file carries checksums in its metadata (``checksums``): a sha256 of the descriptive
fields, and one per block of ``BLOCK_ROWS`` rows over their entity names, input fingerprints
and tensor bytes. Reading verifies them: a file that cannot be read at all (truncated, garbage)
loses its rows, a block that fails its checksum loses only its rows; either is reported in one
line naming the file, and the next ``update`` re-encodes just what was lost (training refuses
to read a damaged file). Files without checksums (older caches) are read as before.

Writers hold ``.lock`` in the folder (``filelock``): a second process encoding into the same
cache waits for the first, then reuses what it wrote.

Sharded encoding (``vlkge encode`` under torchrun): each rank encodes its own entities into
shards numbered ``rank, rank + world, ...`` (:meth:`FeatureCache.encode_part`, no lock, no
merge), then one process runs :meth:`FeatureCache.update`, which finds every row in the shards
and merges them without encoding anything again.

The modules: :mod:`.tables` (the file format and checksums), :mod:`.fingerprints` (input
fingerprints), :mod:`.folder` (the folder's files, lock and commits), :mod:`.encoding` (the
encoding loop), :mod:`.store` (:class:`FeatureCache`), :mod:`.report` (what an update did) and
:mod:`.policy` (what ``vlkge encode`` does with a dataset).
"""

from vlkge.encoders.cache.folder import default_cache_dir
from vlkge.encoders.cache.report import ModalityReport
from vlkge.encoders.cache.store import FeatureCache, ModalFeatures
from vlkge.encoders.cache.tables import imported

__all__ = ["FeatureCache", "ModalFeatures", "ModalityReport", "default_cache_dir", "imported"]
