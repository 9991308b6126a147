"""The `tunelab data` tools (inspect, clean, split, augment, and their reports), built on the data library
(tunelab.data: readers, formats, templates, tokenization, packing, cache). They import the library and the
stages; the library never imports them."""
