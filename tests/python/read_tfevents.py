"""An independent reader of TensorBoard event files (tfevents), used as a test oracle.

Written from the public file format description only (TFRecord framing + the
tensorflow.Event / Summary / HistogramProto protobuf schemas), with the Python
standard library alone: no tensorflow, tensorboard or protobuf package, and
without looking at the project's C++ writer.

usage: read_tfevents.py FILE [FILE...]

What it checks, for every record of every file:
  * TFRecord framing: uint64 LE length, uint32 LE masked CRC32C of the 8 length
    bytes, `length` data bytes, uint32 LE masked CRC32C of the data.  Both CRCs
    must match; a partial trailing record (header or data) is an error; a file
    ending exactly at a record boundary (including a 0-byte file) is fine.
  * The data is a well-formed tensorflow.Event protobuf: valid varints (at most
    10 bytes, no bits beyond 64), valid tags (field number >= 1, wire types 0, 1,
    2 or 5 only; group wire types 3/4 and 6/7 are rejected), no field running
    past the end of its enclosing message, known fields carrying their declared
    wire type (a mismatch is reported, not silently skipped), valid UTF-8 in
    string fields, packed doubles a multiple of 8 bytes.  Unknown fields of wire
    type 0/1/2/5 are skipped.
  * Protobuf semantics are followed: fields may appear in any order, the last
    occurrence of a scalar wins, repeated occurrences of a message field merge,
    and the oneofs Event.what and Summary.Value.value keep only the member set
    last (as the real protobuf library, and hence TensorBoard, would).

Output (stdout), one JSON object per line, in file order:
  {"wall_time": t, "step": s, "file_version": "brain.Event:2"}
  {"wall_time": t, "step": s, "tag": TAG, "simple_value": v}
  {"wall_time": t, "step": s, "tag": TAG, "histo": {"min": .., "max": .., "num": ..,
      "sum": .., "sum_squares": .., "bucket_limit": [..], "bucket": [..]}}
One line per Summary.Value; a value whose oneof holds something else (image,
audio, tensor, ...) or nothing prints just wall_time, step and tag.  Events whose
Event.what is neither file_version nor summary (graph_def, log_message, ...)
print nothing.  Floats are Python floats (simple_value is the float32 decoded
exactly); non-finite values print as NaN / Infinity / -Infinity (Python's json).

Exit status: 0 on success.  On the first framing/CRC error, truncated record or
malformed protobuf, prints one line to stderr
  read_tfevents: FILE: record N at byte B: WHAT
(N counts records from 0, B is the file offset of that record's length field)
and exits 1; lines for earlier valid records have already been printed.
An unreadable file is reported as "read_tfevents: FILE: WHAT" (exit 1); bad usage
exits 2.
"""
import json
import struct
import sys

# ---------------------------------------------------------------- CRC32C ----

_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected


def _make_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _CRC32C_POLY if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _make_table()


def crc32c(data, crc=0):
    """Table-driven CRC-32C (init/xorout 0xFFFFFFFF); crc32c(b"123456789") == 0xE3069283."""
    table = _CRC_TABLE
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# -------------------------------------------------------------- protobuf ----

class FormatError(Exception):
    pass


WT_VARINT, WT_I64, WT_LEN, WT_I32 = 0, 1, 2, 5
_WT_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "start-group",
             4: "end-group", 5: "32-bit", 6: "invalid(6)", 7: "invalid(7)"}


def _read_varint(buf, pos, end, what):
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise FormatError("truncated varint (%s) at offset %d" % (what, start))
        b = buf[pos]
        pos += 1
        if shift == 63 and b > 1:
            raise FormatError("varint (%s) at offset %d overflows 64 bits" % (what, start))
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise FormatError("varint (%s) at offset %d longer than 10 bytes" % (what, start))


def iter_fields(buf, start, end, msg):
    """Yield (field_number, wire_type, value, field_offset) for a message in buf[start:end].

    value is an int for varints, bytes (8 or 4 raw bytes) for fixed 64/32-bit,
    and a (lo, hi) slice range for length-delimited fields.  Offsets are
    relative to the start of the record's data.
    """
    pos = start
    while pos < end:
        fstart = pos
        key, pos = _read_varint(buf, pos, end, msg + " field key")
        field, wt = key >> 3, key & 7
        if key > 0xFFFFFFFF:
            raise FormatError("%s: field key at offset %d exceeds 32 bits" % (msg, fstart))
        if field == 0:
            raise FormatError("%s: field number 0 at offset %d" % (msg, fstart))
        if wt == WT_VARINT:
            val, pos = _read_varint(buf, pos, end, "%s field %d" % (msg, field))
        elif wt == WT_I64:
            if pos + 8 > end:
                raise FormatError("%s field %d at offset %d: truncated 64-bit value" % (msg, field, fstart))
            val = bytes(buf[pos:pos + 8])
            pos += 8
        elif wt == WT_I32:
            if pos + 4 > end:
                raise FormatError("%s field %d at offset %d: truncated 32-bit value" % (msg, field, fstart))
            val = bytes(buf[pos:pos + 4])
            pos += 4
        elif wt == WT_LEN:
            n, pos = _read_varint(buf, pos, end, "%s field %d length" % (msg, field))
            if n > end - pos:
                raise FormatError("%s field %d at offset %d: length %d runs past end of message "
                                  "(%d bytes left)" % (msg, field, fstart, n, end - pos))
            val = (pos, pos + n)
            pos += n
        else:
            raise FormatError("%s field %d at offset %d: unsupported wire type %d (%s)"
                              % (msg, field, fstart, wt, _WT_NAMES[wt]))
        yield field, wt, val, fstart


def _expect(msg, field, wt, want, off):
    if wt != want:
        raise FormatError("%s field %d at offset %d: wire type %d (%s), expected %d (%s)"
                          % (msg, field, off, wt, _WT_NAMES[wt], want, _WT_NAMES[want]))


def _utf8(buf, rng, msg, field, off):
    try:
        return bytes(buf[rng[0]:rng[1]]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError("%s field %d at offset %d: invalid UTF-8 (%s)" % (msg, field, off, e))


def _d(raw):
    return struct.unpack("<d", raw)[0]


def parse_histogram(buf, ranges):
    """HistogramProto from one or more (lo, hi) occurrences (merged, as protobuf does)."""
    msg = "HistogramProto"
    h = {"min": 0.0, "max": 0.0, "num": 0.0, "sum": 0.0, "sum_squares": 0.0,
         "bucket_limit": [], "bucket": []}
    scalars = {1: "min", 2: "max", 3: "num", 4: "sum", 5: "sum_squares"}
    repeated = {6: "bucket_limit", 7: "bucket"}
    for lo, hi in ranges:
        for field, wt, val, off in iter_fields(buf, lo, hi, msg):
            if field in scalars:
                _expect(msg, field, wt, WT_I64, off)
                h[scalars[field]] = _d(val)
            elif field in repeated:
                if wt == WT_I64:  # unpacked element
                    h[repeated[field]].append(_d(val))
                elif wt == WT_LEN:  # packed
                    a, b = val
                    if (b - a) % 8:
                        raise FormatError("%s field %d at offset %d: packed double length %d is not "
                                          "a multiple of 8" % (msg, field, off, b - a))
                    h[repeated[field]].extend(x[0] for x in struct.iter_unpack("<d", bytes(buf[a:b])))
                else:
                    raise FormatError("%s field %d at offset %d: wire type %d (%s), expected 1 or 2"
                                      % (msg, field, off, wt, _WT_NAMES[wt]))
            # unknown fields: skipped
    return h


def parse_summary_values(buf, ranges):
    """Summary (merged over occurrences) -> list of (tag, kind, payload)."""
    values = []
    for lo, hi in ranges:
        for field, wt, val, off in iter_fields(buf, lo, hi, "Summary"):
            if field == 1:
                _expect("Summary", field, wt, WT_LEN, off)
                values.append(parse_value(buf, val))
    return values


def parse_value(buf, rng):
    msg = "Summary.Value"
    tag = ""
    kind = None       # oneof Summary.Value.value: None, "simple_value", "histo", "other"
    simple = None
    histo_ranges = []
    for field, wt, val, off in iter_fields(buf, rng[0], rng[1], msg):
        if field == 1:
            _expect(msg, field, wt, WT_LEN, off)
            tag = _utf8(buf, val, msg, field, off)
        elif field == 2:
            _expect(msg, field, wt, WT_I32, off)
            kind, simple = "simple_value", struct.unpack("<f", val)[0]
        elif field == 5:
            _expect(msg, field, wt, WT_LEN, off)
            if kind != "histo":
                histo_ranges = []
            kind = "histo"
            histo_ranges.append(val)
        elif field in (3, 4, 6, 8):  # other members of the oneof: old histo, image, audio, tensor
            _expect(msg, field, wt, WT_LEN, off)
            kind = "other"
        # unknown fields (node_name 7, metadata 9, ...): skipped
    if kind == "simple_value":
        return tag, kind, simple
    if kind == "histo":
        return tag, kind, parse_histogram(buf, histo_ranges)
    return tag, None, None


def parse_event(buf):
    """Event -> (wall_time, step, what, payload) with what in {None, file_version, summary, other}."""
    msg = "Event"
    end = len(buf)
    wall_time = 0.0
    step = 0
    what = None
    file_version = None
    summary_ranges = []
    for field, wt, val, off in iter_fields(buf, 0, end, msg):
        if field == 1:
            _expect(msg, field, wt, WT_I64, off)
            wall_time = _d(val)
        elif field == 2:
            _expect(msg, field, wt, WT_VARINT, off)
            step = val - (1 << 64) if val >= (1 << 63) else val
        elif field == 3:
            _expect(msg, field, wt, WT_LEN, off)
            what, file_version = "file_version", _utf8(buf, val, msg, field, off)
        elif field == 5:
            _expect(msg, field, wt, WT_LEN, off)
            if what != "summary":
                summary_ranges = []
            what = "summary"
            summary_ranges.append(val)
        elif field in (4, 6, 7, 8, 9):  # graph_def, log_message, session_log, run metadata, meta_graph
            _expect(msg, field, wt, WT_LEN, off)
            what = "other"
        # unknown fields (source_metadata 10, ...): skipped
    if what == "file_version":
        return wall_time, step, what, file_version
    if what == "summary":
        return wall_time, step, what, parse_summary_values(buf, summary_ranges)
    return wall_time, step, what, None


# --------------------------------------------------------------- records ----

class RecordError(Exception):
    def __init__(self, index, offset, what):
        Exception.__init__(self, "record %d at byte %d: %s" % (index, offset, what))


def iter_records(blob):
    """Yield (index, offset, data) for each TFRecord; raises RecordError(index, offset, what)."""
    pos = 0
    n = 0
    size = len(blob)
    while pos < size:
        start = pos
        if size - pos < 12:
            raise RecordError(n, start, "truncated record header: %d of 12 bytes present" % (size - pos))
        length_bytes = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (len_crc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        want = masked_crc32c(length_bytes)
        if len_crc != want:
            raise RecordError(n, start, "length CRC mismatch: stored 0x%08x, computed 0x%08x (length field %d)"
                              % (len_crc, want, length))
        pos += 12
        if length + 4 > size - pos:
            raise RecordError(n, start, "truncated record: length %d needs %d bytes of data+CRC, %d present"
                              % (length, length + 4, size - pos))
        data = blob[pos:pos + length]
        (data_crc,) = struct.unpack("<I", blob[pos + length:pos + length + 4])
        want = masked_crc32c(data)
        if data_crc != want:
            raise RecordError(n, start, "data CRC mismatch: stored 0x%08x, computed 0x%08x (length %d)"
                              % (data_crc, want, length))
        pos += length + 4
        yield n, start, data
        n += 1


def read_events(blob):
    """Yield the output dicts for one file's bytes (raises RecordError)."""
    for n, off, data in iter_records(blob):
        try:
            wall_time, step, what, payload = parse_event(memoryview(data))
        except FormatError as e:
            raise RecordError(n, off, "malformed Event protobuf: %s" % e)
        if what == "file_version":
            yield {"wall_time": wall_time, "step": step, "file_version": payload}
        elif what == "summary":
            for tag, kind, v in payload:
                d = {"wall_time": wall_time, "step": step, "tag": tag}
                if kind is not None:
                    d[kind] = v
                yield d


def main(argv):
    if len(argv) < 2 or any(a in ("-h", "--help") for a in argv[1:]):
        sys.stderr.write("usage: read_tfevents.py FILE [FILE...]\n")
        return 2
    out = sys.stdout
    for path in argv[1:]:
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError as e:
            sys.stderr.write("read_tfevents: %s: %s\n" % (path, e.strerror or e))
            return 1
        try:
            for d in read_events(blob):
                out.write(json.dumps(d) + "\n")
        except RecordError as e:
            out.flush()
            sys.stderr.write("read_tfevents: %s: %s\n" % (path, e))
            return 1
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
