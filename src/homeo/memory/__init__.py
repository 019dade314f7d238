"""Knowledge: documents in named collections, chunked, embedded and searchable.

chunking.py   split a text into chunks by its structure, with overlap
extract.py    the text of a .txt, .md, .html or .pdf file
store.py      the collection/document/chunk store ABC and its records
sql.py        what the SQLite and PostgreSQL stores share; sqlite.py, postgres.py
vectors.py    float32 vectors as bytes, and exact search with numpy
fusion.py     reciprocal rank fusion of ranked lists
embedder.py   embeddings through a model alias, batched, cached by content hash
knowledge.py  the verbs: add, replace, delete, list and search documents
backup.py     a tenant's memory to one checked tar file, and back
"""
