"""A SleepVLM prompt through libmtmd: tokenised into text and image pieces, images encoded and
their embeddings kept. Shared by the in-process handler (``kv_handler``) and the lab server's
engine (``batch_engine``), which evaluate the pieces differently (one sequence vs many).

Internals used (llama-cpp-python 0.3.36 bindings of libmtmd): ``mtmd_helper_bitmap_init_from_buf``,
``mtmd_tokenize``, ``mtmd_input_chunk_*``, ``mtmd_encode_chunk``, ``mtmd_get_output_embd``.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Piece", "tokenize_prompt", "encode_image", "EmbeddingCache", "inline_image"]


@dataclass
class Piece:
    """One piece of a tokenised prompt."""

    kind: str                    # "text" or "image"
    tokens: list[int] = field(default_factory=list)   # text
    ptr: object = None           # image: the libmtmd chunk (valid while its chunks live)
    n_tokens: int = 0            # KV cells it fills
    n_pos: int = 0               # positions it advances
    key: bytes | None = None     # image: SHA-256 of its bytes (None: do not cache)


def tokenize_prompt(mtmd, mctx, text: str, images: list[bytes]) -> tuple[object, list[Piece]]:
    """Tokenise a request's text and images with libmtmd into the pieces the caller evaluates.

    Parameters
    ----------
    mtmd : module
        llama-cpp-python's libmtmd bindings.
    mctx : object
        The libmtmd context (vision projector loaded).
    text : str
        The prompt, with libmtmd's media marker where each image goes.
    images : list of bytes
        The image files (PNG or JPEG), in marker order.

    Returns
    -------
    chunks : object
        The libmtmd chunks. The image pieces point into them: the caller frees them with
        ``mtmd_input_chunks_free`` once done with those pieces.
    pieces : list of Piece
        Text and image pieces in prompt order; empty text pieces are left out. An image piece's
        ``key`` is the SHA-256 of its bytes (None when libmtmd made another number of image
        chunks than there are images).

    Raises
    ------
    ValueError
        One line: the chunks cannot be allocated, an image cannot be decoded, tokenising fails
        (e.g. markers and images differ in number), or a chunk is neither text nor image. The
        chunks are freed first.
    """
    bitmaps, chunks = [], mtmd.mtmd_input_chunks_init()
    if chunks is None:
        raise ValueError("libmtmd could not allocate input chunks")
    try:
        for image in images:
            buf = (ctypes.c_uint8 * len(image)).from_buffer(bytearray(image))
            bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(mctx, buf, len(image), False)
            if not bitmap:
                raise ValueError("an image could not be decoded (PNG or JPEG expected)")
            bitmaps.append(bitmap)
        encoded = text.encode("utf-8")
        itext = mtmd.mtmd_input_text()
        itext.text, itext.text_len = encoded, len(encoded)
        itext.add_special, itext.parse_special = True, True
        array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
        rc = mtmd.mtmd_tokenize(mctx, chunks, ctypes.byref(itext), array, len(bitmaps))
        if rc != 0:
            raise ValueError(f"libmtmd could not tokenise the request (error {rc}; does it hold "
                             "as many image markers as images?)")
        n = int(mtmd.mtmd_input_chunks_size(chunks))
        raw = [mtmd.mtmd_input_chunks_get(chunks, i) for i in range(n)]
        kinds = [mtmd.mtmd_input_chunk_get_type(c) for c in raw]
        n_images = sum(k == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE for k in kinds)
        keys = iter([hashlib.sha256(image).digest() for image in images]
                    if n_images == len(images) else [None] * n_images)
        pieces: list[Piece] = []
        for c, kind in zip(raw, kinds):
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                size = ctypes.c_size_t()
                ptr = mtmd.mtmd_input_chunk_get_tokens_text(c, ctypes.byref(size))
                tokens = [int(ptr[j]) for j in range(size.value)] if ptr else []
                if tokens:
                    pieces.append(Piece("text", tokens, n_tokens=len(tokens), n_pos=len(tokens)))
            elif kind == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                pieces.append(Piece("image", ptr=c, key=next(keys),
                                    n_tokens=int(mtmd.mtmd_input_chunk_get_n_tokens(c)),
                                    n_pos=int(mtmd.mtmd_input_chunk_get_n_pos(c))))
            else:
                raise ValueError("only text and images are supported in a request")
    except BaseException:
        mtmd.mtmd_input_chunks_free(chunks)
        raise
    finally:
        for bitmap in bitmaps:
            mtmd.mtmd_bitmap_free(bitmap)
    return chunks, pieces


def encode_image(mtmd, mctx, chunk, n_tokens: int, n_embd: int) -> np.ndarray:
    """The vision encoder's output for an image chunk.

    Parameters
    ----------
    mtmd : module
        llama-cpp-python's libmtmd bindings.
    mctx : object
        The libmtmd context.
    chunk : object
        An image chunk (an image ``Piece``'s ``ptr``).
    n_tokens : int
        The chunk's tokens (the piece's ``n_tokens``).
    n_embd : int
        The language model's embedding width.

    Returns
    -------
    numpy.ndarray
        ``n_tokens * n_embd`` floats, flat, copied out of libmtmd's output buffer.

    Raises
    ------
    ValueError
        When the encoder fails or returns no embeddings.
    """
    if mtmd.mtmd_encode_chunk(mctx, chunk) != 0:
        raise ValueError("the vision encoder failed")
    pointer = mtmd.mtmd_get_output_embd(mctx)
    if not pointer:
        raise ValueError("the vision encoder returned no embeddings")
    return np.ctypeslib.as_array(pointer, shape=(n_tokens * n_embd,)).copy()


class EmbeddingCache:
    """The encoder outputs of the last ``capacity`` images, by key (least recently used goes)."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def get(self, key: bytes | None) -> np.ndarray | None:
        """The kept encoder output for ``key``, which becomes the most recently used.

        Parameters
        ----------
        key : bytes or None
            An image piece's ``key`` (SHA-256 of its bytes); None is never cached.

        Returns
        -------
        numpy.ndarray or None
            The embedding as it was put (not a copy); None when it is not kept.
        """
        if key is None or key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: bytes | None, embedding: np.ndarray) -> None:
        """Keep ``embedding`` under ``key``, dropping the least recently used beyond ``capacity``.

        Nothing is kept when ``key`` is None or ``capacity`` is 0.

        Parameters
        ----------
        key : bytes or None
            An image piece's ``key`` (SHA-256 of its bytes).
        embedding : numpy.ndarray
            The encoder output (see :func:`encode_image`), kept as it is.
        """
        if key is None or not self.capacity:
            return
        self._items[key] = embedding
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


def inline_image(url: object) -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URL holding a PNG or JPEG.

    Nothing else is accepted: a server must never fetch a URL or read a file a request names.

    Parameters
    ----------
    url : object
        An image URL from a request.

    Returns
    -------
    bytes
        The decoded PNG or JPEG file.

    Raises
    ------
    ValueError
        One line: not an inline base64 image URL, invalid base64, or bytes that are neither PNG
        nor JPEG.
    """
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise ValueError("images must be inline: data:image/...;base64,...")
    try:
        data = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("an image's base64 is invalid") from None
    if not data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        # (libmtmd would try the bytes as audio, then as video through ffprobe)
        raise ValueError("an image could not be decoded (PNG or JPEG expected)")
    return data
