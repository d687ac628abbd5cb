# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""Compiled tunnel record codec: :class:`CRecordEncoder` and :class:`CRecordDecoder`.

They write and read exactly the bytes, values and errors of the pure-Python reference in
:mod:`record_codec` (``PyRecordEncoder`` / ``PyRecordDecoder``), several times faster. How
they stay identical:

* Hot types (the integer types, double, float, string/varchar/char/binary, boolean,
  datetime, date, decimal) are handled in C only for the canonical Python value of the
  type (an exact ``int``, ``float``, ``str``, ``bytes``, ``bool``, naive ``datetime``,
  ``date``, ``Decimal``) and only where the result is certain. Any other value (a numpy
  scalar, an out-of-range int, a NaN float, an aware datetime, a too-long varchar ...)
  and every other type (timestamps, intervals, json, nested types, vectors) goes to the
  reference's own per-type function, which encodes it or raises the reference's error.
* Errors are built by the reference's helpers (``_value_error``, ``_null_error``,
  ``_length_error``, ``_parse_footer``); record-level stream errors use the same messages.
* The decoder keeps the reference's buffer model (a ``bytes`` buffer, ``_pos`` at the
  start of the current record, ``_base`` its body offset), so error offsets and the
  truncation rules are the same, and a value the C path cannot read with certainty
  (invalid UTF-8, an over-long varint, a date out of range, a NaN float) is re-read by
  the reference's per-type decoder, which returns it or raises its error.
* CRC32C is computed here in C (the CPU's CRC32 instruction where there is one, else
  slicing-by-8 tables): a record's CRC bytes are a few dozen bytes, for which a call into
  the ``crc32c`` package would cost more than the checksum itself. It is the same
  function (tests compare it with the package).

The Arrow path (``encode_arrow``) reads the Arrow buffers (validity bitmap, values,
offsets) through the buffer protocol and writes each value without creating a Python
object; it is defined as, and tested to equal, encoding ``column.to_pylist()`` row by
row. Values it cannot write with certainty send the row through the row path.

:class:`CDirectWrite` is the record writers' per-row ``write`` in C (no reference twin:
the writers' own ``write`` method is what it equals, and what runs without it).
"""

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize
from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.datetime cimport PyDate_CheckExact, PyDateTime_CheckExact, PyDateTime_DATE_GET_HOUR
from cpython.datetime cimport PyDateTime_DATE_GET_MICROSECOND, PyDateTime_DATE_GET_MINUTE
from cpython.datetime cimport PyDateTime_DATE_GET_SECOND, PyDateTime_DATE_GET_TZINFO
from cpython.datetime cimport PyDateTime_DELTA_GET_DAYS, PyDateTime_DELTA_GET_MICROSECONDS
from cpython.datetime cimport PyDateTime_DELTA_GET_SECONDS, PyDateTime_GET_DAY
from cpython.datetime cimport PyDateTime_DATE_GET_FOLD, PyDateTime_GET_MONTH, PyDateTime_GET_YEAR
from cpython.datetime cimport PyDelta_CheckExact
from cpython.datetime cimport date_new, datetime_new, import_datetime
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact, PyFloat_FromDouble
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact, PyLong_FromLongLong
from cpython.object cimport PyObject, PyObject_Str
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.sequence cimport PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_AsUTF8String
from cpython.unicode cimport PyUnicode_CheckExact, PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from cpython.unicode cimport PyUnicode_GET_LENGTH
from libc.math cimport isinf, isnan
from libc.stdint cimport INT64_MIN, int8_t, int16_t, int32_t, int64_t, uint8_t, uint32_t
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

import codecs
import datetime as _dt
import decimal as _decimal
import struct
import zoneinfo

from airflow_provider_odps_tunnel.tunnel.codec import types as _types
from airflow_provider_odps_tunnel.tunnel.codec.record import Record
from airflow_provider_odps_tunnel.tunnel.errors import DataStreamError, RecordValidationError
from airflow_provider_odps_tunnel.tunnel.errors import ChecksumError, StreamTruncatedError

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object) noexcept
    void PyObject_GC_UnTrack(object) noexcept

cdef extern from *:
    """
    /* Decimal digits of the magnitude of a little-endian two's-complement int128. */
    static int rc_int128_digits(const unsigned char *p, char *out, int *negative) {
        unsigned long long lo, hi;
        memcpy(&lo, p, 8);
        memcpy(&hi, p + 8, 8);
        unsigned __int128 v = ((unsigned __int128)hi << 64) | lo;
        *negative = (hi >> 63) != 0;
        if (*negative) v = ~v + 1;
        char tmp[40];
        int n = 0;
        if ((v >> 64) == 0) {
            unsigned long long w = (unsigned long long)v;
            do { tmp[n++] = (char)('0' + w % 10); w /= 10; } while (w);
        } else {
            do { tmp[n++] = (char)('0' + (int)(v % 10)); v /= 10; } while (v);
        }
        for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
        return n;
    }
    """
    int rc_int128_digits(const unsigned char *p, char *out, int *negative) noexcept


cdef extern from *:
    """
    /* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), with the usual pre- and
       post-inversion, continuing from `crc` as crc32c.crc32c(data, crc) does. */
    static uint32_t rc_crc_table[8][256];

    static uint32_t rc_crc32c_sw(uint32_t crc, const unsigned char *p, size_t n) {
        crc = ~crc;
        while (n >= 8) {
            uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16
                                 | (uint32_t)p[3] << 24);
            crc = rc_crc_table[7][lo & 0xff] ^ rc_crc_table[6][(lo >> 8) & 0xff]
                ^ rc_crc_table[5][(lo >> 16) & 0xff] ^ rc_crc_table[4][lo >> 24]
                ^ rc_crc_table[3][p[4]] ^ rc_crc_table[2][p[5]] ^ rc_crc_table[1][p[6]]
                ^ rc_crc_table[0][p[7]];
            p += 8;
            n -= 8;
        }
        while (n--) crc = rc_crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        return ~crc;
    }

    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __attribute__((target("sse4.2")))
    static uint32_t rc_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
        unsigned long long c = ~crc & 0xffffffffu;
        while (n >= 8) {
            unsigned long long w;
            memcpy(&w, p, 8);
            c = __builtin_ia32_crc32di(c, w);
            p += 8;
            n -= 8;
        }
        uint32_t c32 = (uint32_t)c;
        while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
        return ~c32;
    }
    #define RC_CRC_HW 1
    #elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
    #include <arm_acle.h>
    static uint32_t rc_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
        crc = ~crc;
        while (n >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            crc = __crc32cd(crc, w);
            p += 8;
            n -= 8;
        }
        while (n--) crc = __crc32cb(crc, *p++);
        return ~crc;
    }
    #define RC_CRC_HW 1
    #endif

    static uint32_t (*rc_crc32c_impl)(uint32_t, const unsigned char *, size_t) = rc_crc32c_sw;

    /* Fill the tables and pick the hardware version when the CPU has the instruction;
       returns 1 when it does. */
    static int rc_crc32c_init(void) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
            rc_crc_table[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = rc_crc_table[0][i];
            for (int t = 1; t < 8; t++) {
                c = rc_crc_table[0][c & 0xff] ^ (c >> 8);
                rc_crc_table[t][i] = c;
            }
        }
    #if defined(RC_CRC_HW) && defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("sse4.2")) rc_crc32c_impl = rc_crc32c_hw;
    #elif defined(RC_CRC_HW)
        rc_crc32c_impl = rc_crc32c_hw;
    #endif
        return rc_crc32c_impl != rc_crc32c_sw;
    }

    static inline uint32_t rc_crc32c(const char *data, Py_ssize_t n, uint32_t crc) {
        return rc_crc32c_impl(crc, (const unsigned char *)data, (size_t)n);
    }
    """
    int rc_crc32c_init() noexcept
    uint32_t rc_crc32c(const char *data, Py_ssize_t n, uint32_t crc) noexcept
    uint32_t rc_crc32c_sw(uint32_t crc, const unsigned char *p, size_t n) noexcept

import_datetime()
#: Whether records' CRC32C uses the CPU's instruction (else the tables).
CRC_HARDWARE = bool(rc_crc32c_init())

# ------------------------------------------------------------------------------ constants
cdef uint64_t END_RECORD = 33553408
cdef uint64_t META_COUNT = 33554430
cdef Py_ssize_t FOLD_AT = 65536  # pending record CRCs are folded into the stream CRC here
cdef Py_ssize_t FLUSH_AT = 1 << 20  # encode_many/encode_arrow hand records over in 1 MiB

# days since 1970-01-01 of 0001-01-01 and 9999-12-31: the range of Python dates
cdef int64_t MIN_DAYS = -719162
cdef int64_t MAX_DAYS = 2932896
cdef int64_t MS_PER_DAY = 86400000

# Column kinds of the row path; K_PY is the reference's per-type function.
cdef enum:
    K_PY = 0
    K_INT
    K_DOUBLE
    K_FLOAT
    K_BOOL
    K_TEXT
    K_DATETIME
    K_DATE
    K_DECIMAL
    K_TIMESTAMP  # timestamp/timestamp_ntz: the Arrow path writes these; rows use K_PY

# How a naive datetime's wall clock becomes an instant.
cdef enum:
    TZ_UTC = 0  # tz is datetime.UTC: the reference's integer shortcut
    TZ_OFFSET  # a ZoneInfo or datetime.timezone: ask tz.utcoffset(value)
    TZ_PY  # anything else: the reference's function

# Where encode_arrow takes a column's values from.
cdef enum:
    A_PY = 0  # column.to_pylist(), through the row path's value encoder
    A_INT
    A_F64
    A_F32
    A_BOOL
    A_BYTES
    A_MS  # int64 epoch milliseconds (already UTC)
    A_DAYS
    A_DEC
    A_NS  # int64 epoch nanoseconds


# --------------------------------------------------------------------------- C buffers
cdef struct Buf:
    char *data
    Py_ssize_t size
    Py_ssize_t cap


cdef int buf_grow(Buf *b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap = b.cap * 2 if b.cap else 4096
    while cap < b.size + extra:
        cap *= 2
    cdef char *data = <char *>realloc(b.data, cap)
    if data == NULL:
        raise MemoryError()
    b.data = data
    b.cap = cap
    return 0


cdef inline int reserve(Buf *b, Py_ssize_t extra) except -1:
    if b.size + extra > b.cap:
        return buf_grow(b, extra)
    return 0


cdef inline void put_varint(Buf *b, uint64_t v) noexcept:
    cdef char *p = b.data + b.size
    while v >= 0x80:
        p[0] = <char>((v & 0x7F) | 0x80)
        p += 1
        v >>= 7
    p[0] = <char>v
    b.size = p + 1 - b.data


cdef inline void put_le(Buf *b, uint64_t v, int width) noexcept:
    cdef char *p = b.data + b.size
    cdef int i
    for i in range(width):
        p[i] = <char>(v >> (8 * i))
    b.size += width


cdef inline void put_raw(Buf *b, const char *data, Py_ssize_t n) noexcept:
    memcpy(b.data + b.size, data, n)
    b.size += n


cdef inline uint64_t get_le(const uint8_t *p, int width) noexcept:
    cdef uint64_t v = 0
    cdef int i
    for i in range(width):
        v |= (<uint64_t>p[i]) << (8 * i)
    return v


cdef inline uint64_t zigzag(int64_t v) noexcept:
    return (<uint64_t>v << 1) ^ <uint64_t>(v >> 63)


cdef extern from *:
    """
    /* Whether a bytearray's buffer is exported (a memoryview holds it), so that resizing it
       fails with BufferError. */
    static int rc_bytearray_exported(PyObject *o) {
        return ((PyByteArrayObject *)o)->ob_exports > 0;
    }
    """
    bint rc_bytearray_exported(object o) noexcept


cdef int check_growable(bytearray out) except -1:
    """Raise now (BufferError while ``out`` is exported) rather than after records were
    counted: the reference's ``out +=`` fails before it counts anything."""
    if rc_bytearray_exported(out):
        raise BufferError("Existing exports of data: object cannot be re-sized")
    return 0


cdef extern from *:
    """
    /* Resize a bytearray to `size`, growing its allocation geometrically (by up to 1 MiB)
       rather than by CPython's 12.5%: records are appended a few dozen bytes at a time, and
       a 64 KiB chunk would otherwise take some sixty reallocations. */
    static int rc_bytearray_resize(PyObject *o, Py_ssize_t size) {
        PyByteArrayObject *b = (PyByteArrayObject *)o;
        Py_ssize_t offset = b->ob_start - b->ob_bytes;
        if (size >= 64 && size + offset + 1 > b->ob_alloc) {
            Py_ssize_t extra = size < (1 << 20) ? size : (1 << 20);
            if (PyByteArray_Resize(o, size + extra) < 0) return -1;
        }
        return PyByteArray_Resize(o, size);
    }
    """
    int rc_bytearray_resize(object o, Py_ssize_t size) except -1


cdef int append_to(bytearray out, const char *data, Py_ssize_t n) except -1:
    cdef Py_ssize_t old = PyByteArray_GET_SIZE(out)
    if n:
        rc_bytearray_resize(out, old + n)
        memcpy(PyByteArray_AS_STRING(out) + old, data, n)
    return 0


cdef int append_bytearray(Buf *b, bytearray data) except -1:
    cdef Py_ssize_t n = PyByteArray_GET_SIZE(data)
    reserve(b, n)
    put_raw(b, PyByteArray_AS_STRING(data), n)
    return 0


def _crc32c(data, unsigned int crc=0, bint software=False):
    """CRC32C of a bytes-like object, continuing from ``crc``: the function records use
    (``software`` forces the table version). For tests."""
    cdef const unsigned char[::1] view = data
    cdef const char *p = <const char *>&view[0] if view.shape[0] else NULL
    if software:
        return rc_crc32c_sw(crc, <const unsigned char *>p, view.shape[0])
    return rc_crc32c(p, view.shape[0], crc)


# ------------------------------------------------------------------------- date helpers
cdef inline int64_t days_from_civil(int y, int m, int d) noexcept:
    """Days since 1970-01-01 of a proleptic Gregorian date with 1 <= y <= 9999."""
    cdef int64_t yy = y - (1 if m <= 2 else 0)
    cdef int64_t era = yy // 400  # yy >= 0 in the datetime range
    cdef int64_t yoe = yy - era * 400
    cdef int64_t doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline void civil_from_days(int64_t days, int *y, int *m, int *d) noexcept:
    """The date of a day number in [MIN_DAYS, MAX_DAYS]."""
    cdef int64_t z = days + 719468  # > 0 in range
    cdef int64_t era = z // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    d[0] = <int>(doy - (153 * mp + 2) // 5 + 1)
    m[0] = <int>(mp + 3 if mp < 10 else mp - 9)
    y[0] = <int>(yoe + era * 400 + (1 if m[0] <= 2 else 0))


cdef inline int64_t floor_div(int64_t a, int64_t b) noexcept:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t naive_micros(object v) noexcept:
    """Microseconds since 1970-01-01 of a datetime's wall clock."""
    cdef int64_t days = days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v),
                                        PyDateTime_GET_DAY(v))
    return ((days * 86400 + PyDateTime_DATE_GET_HOUR(v) * 3600
             + PyDateTime_DATE_GET_MINUTE(v) * 60 + PyDateTime_DATE_GET_SECOND(v)) * 1000000
            + PyDateTime_DATE_GET_MICROSECOND(v))


# ----------------------------------------------------------------------- decimal helpers
cdef bint decimal_text_fits(const char *s, Py_ssize_t n, int64_t max_adjusted) noexcept:
    """True when ``s`` is ``str(Decimal)`` of a finite value that is zero or has
    ``adjusted() <= max_adjusted``: the values the reference encodes without validating.
    Anything else (NaN, Infinity, an odd text) is False and goes to the reference."""
    cdef Py_ssize_t i = 0, n_digits = 0, n_frac = 0, leading = 0
    cdef bint in_frac = False, seen_nonzero = False, exp_negative = False
    cdef int64_t exponent = 0
    cdef char ch
    if i < n and s[i] == c'-':
        i += 1
    while i < n:
        ch = s[i]
        if c'0' <= ch <= c'9':
            n_digits += 1
            if in_frac:
                n_frac += 1
            if ch != c'0':
                seen_nonzero = True
            elif not seen_nonzero:
                leading += 1
        elif ch == c'.' and not in_frac:
            in_frac = True
        elif ch == c'E' or ch == c'e':
            break
        else:
            return False
        i += 1
    if n_digits == 0:
        return False
    if i < n:  # exponent
        i += 1
        if i < n and (s[i] == c'+' or s[i] == c'-'):
            exp_negative = s[i] == c'-'
            i += 1
        if i == n or n - i > 15:
            return False
        while i < n:
            ch = s[i]
            if not c'0' <= ch <= c'9':
                return False
            exponent = exponent * 10 + (ch - c'0')
            i += 1
        if exp_negative:
            exponent = -exponent
    if not seen_nonzero:
        return True
    return exponent - n_frac + (n_digits - leading) - 1 <= max_adjusted


cdef Py_ssize_t format_decimal128(const uint8_t *p, int scale, char *out,
                                  int64_t *adjusted) noexcept:
    """Write ``str(Decimal)`` of the decimal128 at ``p`` with ``scale`` >= 0 into ``out``
    (>= 96 bytes); returns its length. ``adjusted`` receives ``Decimal.adjusted()``, or
    INT64_MIN for zero. This is Python's to-sci-string: plain notation when the exponent
    is <= 0 and the adjusted exponent >= -6, else one digit, a point and ``E-n``."""
    cdef char digits[40]
    cdef int negative = 0
    cdef int nd = rc_int128_digits(p, digits, &negative)
    cdef int64_t leftdigits = nd - scale  # exponent (-scale) + digits
    cdef int64_t dotplace
    cdef Py_ssize_t k = 0, i
    cdef bint is_zero = nd == 1 and digits[0] == c'0'
    adjusted[0] = INT64_MIN if is_zero else leftdigits - 1
    if negative:
        out[k] = c'-'
        k += 1
    dotplace = leftdigits if leftdigits > -6 else 1  # the exponent -scale is <= 0
    if dotplace <= 0:
        out[k] = c'0'
        out[k + 1] = c'.'
        k += 2
        for i in range(-dotplace):
            out[k] = c'0'
            k += 1
        memcpy(out + k, digits, nd)
        k += nd
    elif dotplace >= nd:  # only when scale == 0
        memcpy(out + k, digits, nd)
        k += nd
    else:
        memcpy(out + k, digits, dotplace)
        k += dotplace
        out[k] = c'.'
        k += 1
        memcpy(out + k, digits + dotplace, nd - dotplace)
        k += nd - dotplace
    if leftdigits != dotplace:
        k += _format_exponent(out + k, leftdigits - dotplace)
    return k


cdef Py_ssize_t _format_exponent(char *out, int64_t e) noexcept:
    """``E%+d`` of ``e``."""
    cdef char tmp[24]
    cdef int n = 0
    cdef Py_ssize_t k = 2
    out[0] = c'E'
    out[1] = c'-' if e < 0 else c'+'
    if e < 0:
        e = -e
    while True:
        tmp[n] = <char>(c'0' + e % 10)
        n += 1
        e //= 10
        if e == 0:
            break
    while n:
        n -= 1
        out[k] = tmp[n]
        k += 1
    return k


# ------------------------------------------------------------------------------ helpers
cdef object _ref_module = None
cdef object _NeedMore = None


cdef object _reference():
    """The pure-Python codec module (imported on first use, because it imports this one)."""
    global _ref_module, _NeedMore
    if _ref_module is None:
        from airflow_provider_odps_tunnel.tunnel.codec import record_codec

        _ref_module = record_codec
        _NeedMore = record_codec._NeedMore
    return _ref_module


# Decimal text from the wire is read with this context's create_decimal: unlimited precision
# and exponents, and every signal trapped, so it either returns exactly Decimal(text) or
# raises (then the reference reads the value and raises its own error or returns it). It is
# cheaper than Decimal(text), which parses keyword arguments and looks up the thread's
# context on every call.
_EXACT_DECIMALS = _decimal.Context(
    prec=_decimal.MAX_PREC, Emax=_decimal.MAX_EMAX, Emin=_decimal.MIN_EMIN, clamp=0,
    traps=[_decimal.Clamped, _decimal.DivisionByZero, _decimal.FloatOperation,
           _decimal.Inexact, _decimal.InvalidOperation, _decimal.Overflow, _decimal.Rounded,
           _decimal.Subnormal, _decimal.Underflow],
)


cdef bint _is_utf8(object encoding):
    """Whether ``encoding`` names UTF-8 (then str values take the C path)."""
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except (LookupError, TypeError):
        return False


cdef inline void set_item(PyObject **items, Py_ssize_t i, object value) noexcept:
    """Store ``value`` in a row being built (a field may repeat: the last one wins)."""
    cdef PyObject *old = items[i]
    Py_INCREF(value)
    items[i] = <PyObject *>value
    Py_XDECREF(old)


# ================================================================================ records
cdef extern from *:
    """
    #include "structmember.h"

    /* The offset of a writable object slot of `cls` (a member descriptor from __slots__),
       or -1 when `descr` is not one. */
    static Py_ssize_t rc_slot_offset(PyObject *descr, PyObject *cls) {
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) return -1;
        PyMemberDescrObject *d = (PyMemberDescrObject *)descr;
        if ((PyObject *)d->d_common.d_type != cls || d->d_member->type != T_OBJECT_EX
                || (d->d_member->flags & READONLY)) return -1;
        return d->d_member->offset;
    }

    /* A new instance of `cls` (a class with __slots__ and object's __new__) with the slots
       at offsets[i] set to values[i]: what `obj.<slot> = value` does on a new object. */
    static PyObject *rc_new_slotted(PyObject *cls, const Py_ssize_t *offsets,
                                    PyObject *const *values, int n) {
        PyTypeObject *type = (PyTypeObject *)cls;
        PyObject *obj = type->tp_alloc(type, 0);  /* slots start NULL */
        if (obj == NULL) return NULL;
        for (int i = 0; i < n; i++) {
            Py_INCREF(values[i]);
            *(PyObject **)((char *)obj + offsets[i]) = values[i];
        }
        return obj;
    }
    """
    Py_ssize_t rc_slot_offset(object descr, object cls) noexcept
    object rc_new_slotted(object cls, const Py_ssize_t *offsets, PyObject **values, int n)


cdef extern from *:
    """
    /* obj.<slot> through the slot's descriptor, without the attribute lookup. */
    static PyObject *rc_get_slot(PyObject *descr, PyObject *obj) {
        return Py_TYPE(descr)->tp_descr_get(descr, obj, (PyObject *)Py_TYPE(obj));
    }
    """
    object rc_get_slot(PyObject *descr, PyObject *obj)


# The slots of a Record that _RecordMaker sets, in this order; the last one holds the values.
_RECORD_SLOTS = ("_columns", "_index", "_n_data", "values")
cdef object _Record = Record
cdef object _RECORD_VALUES = Record.__dict__["values"]  # the slot's descriptor


@cython.final
cdef class _RecordMaker:
    """Makes ``Record._trusted(columns, index, values)`` for many value lists, in C.

    A ``Record`` is a plain class with ``__slots__``; a new one is allocated and its slots
    are filled, exactly what the Python constructor does, without running Python code per
    record. The slots' offsets come from their member descriptors, checked here.
    """

    cdef object _cls
    cdef tuple _shared
    cdef Py_ssize_t _offsets[4]
    cdef PyObject *_values[4]

    def __cinit__(self, list columns, dict index):
        cls = _Record
        if cls.__new__ is not object.__new__:
            raise TypeError("Record must use object.__new__")
        self._cls = cls
        self._shared = (columns, index, len(columns))
        cdef Py_ssize_t i
        for i in range(4):
            self._offsets[i] = rc_slot_offset(cls.__dict__.get(_RECORD_SLOTS[i]), cls)
            if self._offsets[i] < 0:
                raise TypeError(f"Record.{_RECORD_SLOTS[i]} is not a slot")
        for i in range(3):
            self._values[i] = <PyObject *>self._shared[i]

    cdef inline object make(self, list values):
        self._values[3] = <PyObject *>values
        return rc_new_slotted(self._cls, self._offsets, self._values, 4)


@cython.final
cdef class CRecordIterator:
    """The rows of a batch (tuples, in column order) as :class:`Record` objects, made one
    per ``next()``: the same records, in the same order, as ``PyRecordIterator``.

    Each record is ``Record._trusted(columns, index, list(row))``, made when it is asked
    for. A consumer that drops each record before taking the next thus keeps at most one
    alive, and the cyclic collector never has to walk (and promote) a batch of records.
    """

    cdef list _rows
    cdef Py_ssize_t _pos
    cdef _RecordMaker _maker

    def __init__(self, list rows not None, list columns not None, dict index not None):
        self._rows = rows
        self._pos = 0
        self._maker = _RecordMaker(columns, index)

    def __iter__(self):
        return self

    def __next__(self):
        cdef Py_ssize_t pos = self._pos
        if pos >= len(self._rows):
            raise StopIteration
        row = self._rows[pos]
        self._rows[pos] = None  # not kept alive by the batch once handed out
        self._pos = pos + 1
        return self._maker.make(list(row))

    def __length_hint__(self):
        """Rows not handed out yet."""
        return len(self._rows) - self._pos

    def rest(self):
        """The rows not handed out yet, as they were given; the iterator is then exhausted."""
        rows = self._rows[self._pos:]
        self._pos = len(self._rows)
        return rows


# ================================================================================ encoder
cdef struct ColPlan:
    int kind
    bint nullable
    bint utf8  # str values are encoded as UTF-8 (the encoding is utf-8)
    bint raw_bytes  # exact bytes values are written as they are (no UTF-8 check)
    int tag_len
    unsigned char tag[8]
    int field
    int64_t lo
    int64_t hi
    Py_ssize_t max_length  # characters; -1 when unlimited
    int64_t max_adjusted
    bint ntz  # timestamp_ntz (as opposed to timestamp)


cdef struct ArrowCol:
    int kind
    int width
    const uint8_t *valid
    const uint8_t *data
    const uint8_t *offsets
    Py_ssize_t offset
    int scale
    bint count_chars  # str values of a varchar/char column: check the length


@cython.final
cdef class CRecordEncoder:
    """Encodes rows into one record body: ``encode(row, out)`` per row, or
    ``encode_many(rows, out)`` / ``encode_arrow(batch, out)`` for many, then ``footer()``.

    Same constructor, attributes, bytes and errors as ``PyRecordEncoder``.
    """

    cdef public list columns
    cdef public long long count
    cdef list _plan
    cdef list _encoders
    cdef object _tz
    cdef object _utcoffset  # tz.utcoffset
    cdef int _tz_mode
    cdef ColPlan *_cols
    cdef Py_ssize_t _ncols
    cdef Buf _out
    cdef Buf _crc
    cdef Buf _pending
    cdef uint32_t _crccrc
    cdef bytearray _tmp_out
    cdef bytearray _tmp_crc
    cdef object _decimal_type

    def __init__(self, columns, tz=None, encoding="utf-8", string_as_binary=False):
        ref = _reference()
        self.columns = list(columns)
        codecs_ = ref._codecs(tz, encoding, string_as_binary)
        self._plan = ref._encode_plan(self.columns, codecs_)
        self._encoders = [entry[2] for entry in self._plan]
        self._tz = codecs_.tz
        self._utcoffset = self._tz.utcoffset
        if self._tz is _dt.UTC:
            self._tz_mode = TZ_UTC
        elif type(self._tz) is zoneinfo.ZoneInfo or type(self._tz) is _dt.timezone:
            self._tz_mode = TZ_OFFSET
        else:
            self._tz_mode = TZ_PY
        self._decimal_type = _decimal.Decimal
        self._tmp_out = bytearray()
        self._tmp_crc = bytearray()
        self.count = 0
        self._crccrc = 0
        self._ncols = len(self.columns)
        self._cols = <ColPlan *>realloc(self._cols, max(self._ncols, 1) * sizeof(ColPlan))
        if self._cols == NULL:
            raise MemoryError()
        cdef Py_ssize_t i
        for i in range(self._ncols):
            self._plan_column(i, self._plan[i], _is_utf8(encoding),
                              bool(codecs_.string_as_binary))

    def __dealloc__(self):
        free(self._cols)
        free(self._out.data)
        free(self._crc.data)
        free(self._pending.data)

    cdef _plan_column(self, Py_ssize_t i, tuple entry, bint utf8, bint string_as_binary):
        cdef ColPlan *c = &self._cols[i]
        cdef bytes tag = entry[0]
        col = entry[3]
        dt = col.type
        c.nullable = bool(col.nullable)
        c.tag_len = len(tag)
        memcpy(c.tag, PyBytes_AS_STRING(tag), c.tag_len)
        c.field = i + 1
        c.lo = c.hi = 0
        c.max_length = -1
        c.max_adjusted = 0
        c.utf8 = utf8
        c.raw_bytes = False
        c.ntz = False
        c.kind = K_PY
        if isinstance(dt, _types.IntegerType):
            c.kind = K_INT
            c.lo = dt.min_value
            c.hi = dt.max_value
        elif dt == _types.double:
            c.kind = K_DOUBLE
        elif dt == _types.float_:
            c.kind = K_FLOAT
        elif dt == _types.boolean:
            c.kind = K_BOOL
        elif isinstance(dt, _types._StringType) or dt == _types.binary:
            c.kind = K_TEXT
            c.raw_bytes = dt == _types.binary or string_as_binary
            if getattr(dt, "max_length", None) is not None:
                c.max_length = dt.max_length
        elif dt == _types.datetime:
            c.kind = K_PY if self._tz_mode == TZ_PY else K_DATETIME
        elif dt == _types.date:
            c.kind = K_DATE
        elif isinstance(dt, _types.Decimal):
            c.kind = K_DECIMAL
            c.max_adjusted = dt.precision - dt.scale - 1
        elif dt in (_types.timestamp, _types.timestamp_ntz):
            c.kind = K_TIMESTAMP
            c.ntz = dt == _types.timestamp_ntz

    # ------------------------------------------------------------------ value writers
    cdef inline int _tag(self, ColPlan *c) except -1:
        reserve(&self._out, 8)
        reserve(&self._crc, 4)
        put_raw(&self._out, <const char *>c.tag, c.tag_len)
        put_le(&self._crc, <uint64_t>c.field, 4)
        return 0

    cdef inline int _zigzag64(self, int64_t v) except -1:
        reserve(&self._out, 10)
        reserve(&self._crc, 8)
        put_le(&self._crc, <uint64_t>v, 8)
        put_varint(&self._out, zigzag(v))
        return 0

    cdef inline int _fixed(self, uint64_t bits, int width) except -1:
        reserve(&self._out, 8)
        reserve(&self._crc, 8)
        put_le(&self._out, bits, width)
        put_le(&self._crc, bits, width)
        return 0

    cdef inline int _double(self, double d) except -1:
        cdef uint64_t bits
        memcpy(&bits, &d, 8)
        return self._fixed(bits, 8)

    cdef inline int _float(self, float f) except -1:
        cdef uint32_t bits
        memcpy(&bits, &f, 4)
        return self._fixed(bits, 4)

    cdef inline int _bytes(self, const char *data, Py_ssize_t n) except -1:
        reserve(&self._out, n + 10)
        reserve(&self._crc, n)
        put_varint(&self._out, <uint64_t>n)
        put_raw(&self._out, data, n)
        put_raw(&self._crc, data, n)
        return 0

    cdef inline int _pair(self, int64_t seconds, int32_t nanos) except -1:
        reserve(&self._out, 20)
        reserve(&self._crc, 12)
        put_le(&self._crc, <uint64_t>seconds, 8)
        put_le(&self._crc, <uint64_t>nanos, 4)
        put_varint(&self._out, zigzag(seconds))
        put_varint(&self._out, <uint64_t>nanos << 1)
        return 0

    cdef int _python_value(self, Py_ssize_t i, object value) except -1:
        """Encode a value with the reference's function for its column."""
        cdef bytearray out = self._tmp_out, crc = self._tmp_crc
        try:
            self._encoders[i](value, out, crc)
            append_bytearray(&self._out, out)
            append_bytearray(&self._crc, crc)
        finally:
            del out[:]
            del crc[:]
        return 0

    cdef int _value(self, Py_ssize_t i, object v) except -1:
        """Write column ``i``'s non-null value (its tag is already written)."""
        cdef ColPlan *c = &self._cols[i]
        cdef int kind = c.kind
        cdef long long x
        cdef int overflow
        cdef double d
        cdef float f
        cdef const char *data
        cdef Py_ssize_t n
        cdef int64_t micros
        if kind == K_INT:
            if PyLong_CheckExact(v):
                x = PyLong_AsLongLongAndOverflow(v, &overflow)
                if not overflow and c.lo <= x <= c.hi:
                    return self._zigzag64(x)
        elif kind == K_DOUBLE:
            if PyFloat_CheckExact(v):
                return self._double(PyFloat_AS_DOUBLE(v))
        elif kind == K_TEXT:
            if PyUnicode_CheckExact(v) and c.utf8:
                if c.max_length < 0 or PyUnicode_GET_LENGTH(v) <= c.max_length:
                    if PyUnicode_IS_ASCII(v):
                        data = PyUnicode_AsUTF8AndSize(v, &n)  # the str's own data, no copy
                        return self._bytes(data, n)
                    return self._utf8(i, v)
            elif PyBytes_CheckExact(v) and c.raw_bytes:
                return self._bytes(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v))
        elif kind == K_BOOL:
            if v is True:
                return self._fixed(1, 1)
            if v is False:
                return self._fixed(0, 1)
        elif kind == K_DATETIME:
            if PyDateTime_CheckExact(v) and PyDateTime_DATE_GET_TZINFO(v) == <PyObject *>None:
                micros = naive_micros(v)
                if self._tz_mode == TZ_OFFSET:
                    micros -= self._offset_micros(v)
                return self._zigzag64(floor_div(micros, 1000))
        elif kind == K_DATE:
            if PyDate_CheckExact(v):
                return self._zigzag64(days_from_civil(
                    PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v)))
        elif kind == K_DECIMAL:
            if type(v) is self._decimal_type:
                return self._decimal(i, v)
        elif kind == K_FLOAT:
            if PyFloat_CheckExact(v):
                d = PyFloat_AS_DOUBLE(v)
                f = <float>d
                if not isnan(d) and (not isinf(f) or isinf(d)):
                    return self._float(f)
        return self._python_value(i, v)

    cdef int _utf8(self, Py_ssize_t i, object v) except -1:
        """A non-ASCII str: encoded into a temporary (not cached on the str, as
        ``PyUnicode_AsUTF8AndSize`` would); lone surrogates go to the reference."""
        try:
            b = PyUnicode_AsUTF8String(v)
        except UnicodeEncodeError:
            return self._python_value(i, v)
        return self._bytes(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    cdef int64_t _offset_micros(self, object v) except? -1:
        """``tz.utcoffset(v)`` in microseconds: what ``v.replace(tzinfo=tz)`` subtracts."""
        off = self._utcoffset(v)
        if not PyDelta_CheckExact(off):
            raise TypeError(f"utcoffset() returned {off!r}")
        return ((<int64_t>PyDateTime_DELTA_GET_DAYS(off) * 86400
                 + PyDateTime_DELTA_GET_SECONDS(off)) * 1000000
                + PyDateTime_DELTA_GET_MICROSECONDS(off))

    cdef int _decimal(self, Py_ssize_t i, object v) except -1:
        cdef str text = PyObject_Str(v)
        cdef Py_ssize_t n
        cdef const char *data = PyUnicode_AsUTF8AndSize(text, &n)
        if decimal_text_fits(data, n, self._cols[i].max_adjusted):
            return self._bytes(data, n)
        return self._python_value(i, v)

    # ------------------------------------------------------------------ records
    cdef int _record(self, object row) except -1:
        """Append one record to the scratch buffer; on an error nothing is appended and
        the reference's error for the row is raised."""
        cdef Py_ssize_t start = self._out.size, i, n, n_items
        cdef Py_ssize_t first_null = -1
        cdef PyObject **items
        cdef object v
        cdef object seq = row if (type(row) is tuple or type(row) is list) else list(row)
        n_items = PySequence_Fast_GET_SIZE(seq)
        items = PySequence_Fast_ITEMS(seq)
        n = n_items if n_items < self._ncols else self._ncols
        self._crc.size = 0
        try:
            for i in range(n):
                v = <object>items[i]
                if v is None:
                    if first_null < 0 and not self._cols[i].nullable:
                        first_null = i
                    continue
                self._tag(&self._cols[i])
                self._value(i, v)
        except RecordValidationError:
            self._out.size = start
            raise
        except Exception as exc:
            self._out.size = start
            raise _reference()._value_error(self._plan, row, exc, self.count) from None
        if n_items < self._ncols:
            self._out.size = start
            raise _reference()._length_error(row, self._ncols, self.count)
        if first_null >= 0:
            self._out.size = start
            raise _reference()._null_error(self.columns[first_null], self.count)
        return self._end_record()

    cdef int _end_record(self) except -1:
        cdef uint32_t value = rc_crc32c(self._crc.data, self._crc.size, 0)
        reserve(&self._out, 9)
        put_raw(&self._out, b"\x80\xc0\xff\x7f", 4)  # END_RECORD tag
        put_varint(&self._out, value)
        reserve(&self._pending, 4)
        put_le(&self._pending, value, 4)
        if self._pending.size >= FOLD_AT:
            self._fold()
        self.count += 1
        return 0

    cdef int _fold(self) except -1:
        self._crccrc = rc_crc32c(self._pending.data, self._pending.size, self._crccrc)
        self._pending.size = 0
        return 0

    cdef int _flush(self, bytearray out) except -1:
        cdef Py_ssize_t n = self._out.size
        self._out.size = 0
        return append_to(out, self._out.data, n)

    def encode(self, row, bytearray out not None):
        """Append one record to ``out``. Raises :class:`RecordValidationError`."""
        check_growable(out)
        try:
            self._record(row)
        finally:
            self._flush(out)

    def try_encode(self, row, bytearray out not None):
        """Encode ``row`` as :meth:`encode` does and return True if it is a ``Record`` or
        a tuple or list of exactly the encoder's columns; else encode nothing and return
        False. The writers call it once per row, so the type test is made here, in C."""
        return self._try_encode(row, out)

    cdef bint _try_encode(self, object row, bytearray out) except -1:
        cdef object kind = type(row)
        if kind is _Record:
            row = rc_get_slot(<PyObject *>_RECORD_VALUES, <PyObject *>row)
        elif not ((kind is tuple or kind is list) and len(row) == self._ncols):
            return False
        check_growable(out)
        try:
            self._record(row)
        finally:
            self._flush(out)
        return True

    def encode_many(self, rows, bytearray out not None):
        """Append one record per row to ``out``, the same as calling :meth:`encode` per row:
        on an error the earlier rows stay encoded and counted."""
        check_growable(out)
        try:
            for row in rows:
                self._record(row)
                if self._out.size >= FLUSH_AT:
                    self._flush(out)
        finally:
            self._flush(out)

    def footer(self):
        """The count and checksum trailer; the encoder then starts a new body."""
        self._fold()
        cdef uint64_t count = self.count
        cdef Buf b
        b.data = NULL
        b.size = b.cap = 0
        try:
            reserve(&b, 32)
            put_raw(&b, b"\xf0\xff\xff\x7f", 4)  # META_COUNT tag
            put_varint(&b, count << 1)
            put_raw(&b, b"\xf8\xff\xff\x7f", 4)  # META_CHECKSUM tag
            put_varint(&b, self._crccrc)
            result = PyBytes_FromStringAndSize(b.data, b.size)
        finally:
            free(b.data)
        self.count = 0
        self._crccrc = 0
        return result

    # ------------------------------------------------------------------ Arrow
    def encode_arrow(self, batch, bytearray out not None):
        """Append one record per row of a ``pyarrow.RecordBatch`` whose columns are the data
        columns in wire order (the session's Arrow schema); extra columns are ignored.

        Equal to encoding ``column.to_pylist()`` row by row (which ``PyRecordEncoder``
        does), without a Python object per value for int8/16/32/64, float32/64,
        string/large_string/binary/large_binary, bool, timestamp[ms] (datetime), date32,
        decimal128 and timestamp[ns] (timestamp, timestamp_ntz). Other columns go through
        ``to_pylist`` and the row path's value encoder. Errors name the column and row as
        :meth:`encode` does. A ``pyarrow.Table`` is encoded batch by batch.
        """
        import pyarrow as pa

        check_growable(out)
        if isinstance(batch, pa.Table):
            for chunk in batch.to_batches():
                self.encode_arrow(chunk, out)
            return
        if batch.num_columns < self._ncols:  # every row fails as encode() says
            values = [column.to_pylist() for column in batch.columns]
            rows = zip(*values) if values else [()] * batch.num_rows
            return self.encode_many(rows, out)
        cdef ArrowCol *cols = <ArrowCol *>realloc(NULL, max(self._ncols, 1) * sizeof(ArrowCol))
        if cols == NULL:
            raise MemoryError()
        cdef list keep = []  # the Arrow objects whose memory cols point into
        cdef list pylists = [None] * self._ncols
        cdef Py_ssize_t i, r, nrows = batch.num_rows
        cdef int status
        try:
            for i in range(self._ncols):
                self._arrow_column(&cols[i], i, batch.column(i), keep, pylists)
            for r in range(nrows):
                status = self._arrow_record(cols, r, pylists)
                if status:  # a value only the row path can encode, or an error
                    self._flush(out)
                    self.encode([batch.column(i)[r].as_py() for i in range(self._ncols)], out)
                elif self._out.size >= FLUSH_AT:
                    self._flush(out)
        finally:
            free(cols)
            self._flush(out)

    def _arrow_sources(self, batch):
        """Where ``encode_arrow`` takes each column of ``batch`` from: ``"buffers"`` (read in
        C) or ``"pylist"`` (``to_pylist`` and the row path). For tests and diagnostics."""
        cdef ArrowCol a
        cdef list keep = [], pylists = [None] * self._ncols
        cdef Py_ssize_t i
        sources = []
        for i in range(self._ncols):
            self._arrow_column(&a, i, batch.column(i), keep, pylists)
            sources.append("pylist" if a.kind == A_PY else "buffers")
        return sources

    cdef _arrow_column(self, ArrowCol *a, Py_ssize_t i, object arr, list keep, list pylists):
        """Point ``a`` at the Arrow buffers of column ``i``, or fill ``pylists[i]``."""
        import pyarrow as pa

        cdef ColPlan *c = &self._cols[i]
        cdef int kind = A_PY
        t = arr.type
        a.width = 0
        a.scale = 0
        a.count_chars = False
        if c.kind == K_INT and pa.types.is_signed_integer(t):
            kind = A_INT
            a.width = t.bit_width // 8
        elif (c.kind == K_DOUBLE or c.kind == K_FLOAT) and pa.types.is_float64(t):
            kind = A_F64
        elif (c.kind == K_DOUBLE or c.kind == K_FLOAT) and pa.types.is_float32(t):
            kind = A_F32
        elif c.kind == K_BOOL and pa.types.is_boolean(t):
            kind = A_BOOL
        elif c.kind == K_TEXT and (
            ((pa.types.is_string(t) or pa.types.is_large_string(t)) and c.utf8)
            or ((pa.types.is_binary(t) or pa.types.is_large_binary(t)) and c.raw_bytes)
        ):
            if _valid_arrow(arr):  # invalid UTF-8 must fail in to_pylist, as it does there
                kind = A_BYTES
                a.width = 8 if (pa.types.is_large_string(t) or pa.types.is_large_binary(t)) \
                    else 4
                a.count_chars = c.max_length >= 0 and (
                    pa.types.is_string(t) or pa.types.is_large_string(t))
        elif c.kind == K_DATETIME and pa.types.is_timestamp(t) and t.unit == "ms":
            converted = self._arrow_millis(arr)
            if converted is not None:
                kind = A_MS
                arr = converted
        elif c.kind == K_DATE and pa.types.is_date32(t) and \
                _in_range(arr.view(pa.int32()), MIN_DAYS, MAX_DAYS):
            kind = A_DAYS
        elif c.kind == K_DECIMAL and pa.types.is_decimal128(t) and t.scale >= 0 and \
                _decimal.getcontext().capitals:  # str(Decimal) writes "e" when it is 0
            kind = A_DEC
            a.scale = t.scale
        elif c.kind == K_TIMESTAMP and pa.types.is_timestamp(t) and t.unit == "ns":
            # The reference's pair is the raw nanoseconds for: naive values in an NTZ
            # column, aware values in a TIMESTAMP column, and naive ones when tz is UTC.
            if (t.tz is None) if c.ntz else (t.tz is not None or self._tz_mode == TZ_UTC):
                kind = A_NS
        a.kind = kind
        if kind == A_PY:
            pylists[i] = arr.to_pylist()
            return
        keep.append(arr)
        buffers = arr.buffers()
        keep.append(buffers)
        a.offset = arr.offset
        a.valid = _address(buffers[0]) if arr.null_count else NULL
        if kind == A_BYTES:
            a.offsets = _address(buffers[1])
            a.data = _address(buffers[2])
        else:
            a.offsets = NULL
            a.data = _address(buffers[1])

    cdef object _arrow_millis(self, object arr):
        """Epoch milliseconds of a timestamp[ms] column as the reference computes them from
        ``to_pylist()``, or None when only that path can say.

        Aware values are instants already. Naive values are wall clock in the encoder's
        zone: kept for UTC; for a ZoneInfo, converted with ``pyarrow.compute.
        assume_timezone`` where Arrow agrees with zoneinfo (see ``_arrow_zone_limit``).
        Ambiguous times take the earlier instant, which is what ``replace(tzinfo=zone)``
        with fold=0 gives; a column with a non-existent time raises there and takes the
        reference path, because fold=0 maps those with the offset before the gap, which
        Arrow has no option for. Values outside Python's datetime range fail in
        ``to_pylist``, so they take that path too.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        cdef int64_t margin = MS_PER_DAY  # aware values become local datetimes: keep clear
        cdef int64_t lo = MIN_DAYS * MS_PER_DAY + margin
        cdef int64_t hi = (MAX_DAYS + 1) * MS_PER_DAY - 1 - margin
        cdef bint convert = arr.type.tz is None and self._tz_mode != TZ_UTC
        if convert:
            if type(self._tz) is not zoneinfo.ZoneInfo:
                return None
            hi = min(hi, _arrow_zone_limit(self._tz) - 1)
        if not _in_range(arr.view(pa.int64()), lo, hi):
            return None
        if not convert:
            return arr
        try:
            return pc.assume_timezone(arr, self._tz.key, ambiguous="earliest",
                                      nonexistent="raise")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            return None

    cdef int _arrow_record(self, ArrowCol *cols, Py_ssize_t r, list pylists) except -1:
        """Append row ``r``'s record; returns 1 (and appends nothing) when a value needs
        the row path: a null in a NOT NULL column, a value out of its column's range, a
        NaN float, an over-long varchar, or any error."""
        cdef Py_ssize_t start = self._out.size, i, j, begin, end
        cdef ArrowCol *a
        cdef ColPlan *c
        cdef int64_t x, adjusted
        cdef double d
        cdef float f
        cdef char text[96]
        cdef Py_ssize_t n
        self._crc.size = 0
        try:
            for i in range(self._ncols):
                a = &cols[i]
                c = &self._cols[i]
                j = a.offset + r
                if a.kind == A_PY:
                    v = pylists[i][r]
                    if v is None:
                        if not c.nullable:
                            self._out.size = start
                            return 1
                        continue
                    self._tag(c)
                    self._value(i, v)
                    continue
                if a.valid != NULL and not (a.valid[j >> 3] >> (j & 7)) & 1:
                    if not c.nullable:
                        self._out.size = start
                        return 1
                    continue
                self._tag(c)
                if a.kind == A_INT:
                    if a.width == 8:
                        x = (<const int64_t *>a.data)[j]
                    elif a.width == 4:
                        x = (<const int32_t *>a.data)[j]
                    elif a.width == 2:
                        x = (<const int16_t *>a.data)[j]
                    else:
                        x = (<const int8_t *>a.data)[j]
                    if not c.lo <= x <= c.hi:
                        self._out.size = start
                        return 1
                    self._zigzag64(x)
                elif a.kind == A_F64 or a.kind == A_F32:
                    if a.kind == A_F64:
                        d = (<const double *>a.data)[j]
                    else:
                        d = (<const float *>a.data)[j]
                    if c.kind == K_DOUBLE and a.kind == A_F64:
                        self._double(d)
                    else:
                        f = <float>d
                        if isnan(d) or (isinf(f) and not isinf(d)):
                            self._out.size = start
                            return 1
                        if c.kind == K_DOUBLE:
                            self._double(d)
                        else:
                            self._float(f)
                elif a.kind == A_BYTES:
                    if a.width == 4:
                        begin = (<const int32_t *>a.offsets)[j]
                        end = (<const int32_t *>a.offsets)[j + 1]
                    else:
                        begin = (<const int64_t *>a.offsets)[j]
                        end = (<const int64_t *>a.offsets)[j + 1]
                    if a.count_chars and \
                            _utf8_length(a.data + begin, end - begin) > c.max_length:
                        self._out.size = start
                        return 1
                    self._bytes(<const char *>a.data + begin, end - begin)
                elif a.kind == A_BOOL:
                    self._fixed((a.data[j >> 3] >> (j & 7)) & 1, 1)
                elif a.kind == A_MS:
                    self._zigzag64((<const int64_t *>a.data)[j])
                elif a.kind == A_DAYS:
                    self._zigzag64((<const int32_t *>a.data)[j])
                elif a.kind == A_DEC:
                    n = format_decimal128(a.data + 16 * j, a.scale, text, &adjusted)
                    if adjusted > c.max_adjusted:
                        self._out.size = start
                        return 1
                    self._bytes(text, n)
                elif a.kind == A_NS:
                    x = (<const int64_t *>a.data)[j]
                    self._pair(floor_div(x, 1000000000),
                               <int32_t>(x - floor_div(x, 1000000000) * 1000000000))
        except Exception:
            self._out.size = start
            return 1
        self._end_record()
        return 0


@cython.final
cdef class CDirectWrite:
    """The compiled twin of a record writer's ``write`` for the rows its encoder takes
    whole (a ``Record``, or a tuple or list of exactly the data columns).

    A writer (``io/record_writer.py``) calls one row at a time, so it installs
    :meth:`write` as its instance's ``write`` while it is open and untimed: a row then
    costs one C call instead of a Python method's attribute reads and ``len``. It does
    what the class's ``write`` does on its first branch: encode the row into the buffer
    given to :meth:`arm` and, once that holds ``limit`` bytes or more, call the writer's
    ``_at_limit()`` (which sends a chunk or block, or tells progress, and arms again).
    Any other row, and every row while disarmed (before the writer arms it, and after it
    closes), goes to the writer's class ``write``, which handles it or raises.
    """

    cdef CRecordEncoder _encoder
    cdef object _writer
    cdef object _class_write
    cdef bytearray _buffer  # None while disarmed
    cdef Py_ssize_t _limit

    def __init__(self, CRecordEncoder encoder not None, writer not None):
        self._encoder = encoder
        self._writer = writer
        self._class_write = type(writer).write
        self._buffer = None
        self._limit = 0

    def arm(self, bytearray buffer not None, Py_ssize_t limit):
        """Encode rows into ``buffer`` until it holds ``limit`` bytes."""
        self._buffer = buffer
        self._limit = limit

    def disarm(self):
        """Hand every row to the writer's class ``write`` from now on."""
        self._buffer = None

    def write(self, record):
        """Write a Record, a row (tuple/list), or a RecordBatch, Table or DataFrame."""
        cdef bytearray buffer = self._buffer
        if buffer is not None and self._encoder._try_encode(record, buffer):
            if PyByteArray_GET_SIZE(buffer) >= self._limit:
                self._writer._at_limit()
            return
        self._class_write(self._writer, record)


cdef inline Py_ssize_t _utf8_length(const uint8_t *p, Py_ssize_t n) noexcept:
    """Code points in valid UTF-8: the bytes that are not continuation bytes."""
    cdef Py_ssize_t count = 0, i
    for i in range(n):
        count += (p[i] & 0xC0) != 0x80
    return count


cdef const uint8_t *_address(object buffer) except? NULL:
    """The start of an Arrow buffer, through the buffer protocol (NULL when it is empty)."""
    if buffer is None:
        return NULL
    cdef const signed char[::1] view = buffer  # pyarrow.Buffer's format is "b"
    if view.shape[0] == 0:
        return NULL
    return <const uint8_t *>&view[0]


cdef dict _zone_limits = {}


cdef int64_t _arrow_zone_limit(object tz) except? -1:
    """The wall-clock epoch milliseconds below which Arrow's ``assume_timezone`` gives
    zoneinfo's offsets for ``tz`` (cached per zone).

    Arrow reads the zone's transition table but not the rule that continues it (the
    table of the usual "fat" tzdata files ends in 2037), so it is wrong for DST zones
    from 2038, and for earlier years with "slim" files. Noon on 15 January and 15 July of
    every year from 1850 to 2037 is compared; the limit is the start of the first year
    that differs (2038 when none does; the minimum when Arrow does not know the zone).
    """
    cached = _zone_limits.get(tz)
    if cached is not None:
        return cached
    import pyarrow as pa
    import pyarrow.compute as pc

    epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
    milli = _dt.timedelta(milliseconds=1)
    probes = [_dt.datetime(y, m, 15, 12) for y in range(1850, 2038) for m in (1, 7)]
    limit = (_dt.datetime(2038, 1, 1) - epoch.replace(tzinfo=None)) // milli
    try:
        got = pc.assume_timezone(pa.array(probes, pa.timestamp("ms")), tz.key,
                                 ambiguous="earliest", nonexistent="raise")
        got = got.view(pa.int64()).to_pylist()
    except Exception:
        limit = MIN_DAYS * MS_PER_DAY
    else:
        for probe, value in zip(probes, got):
            if value != (probe.replace(tzinfo=tz) - epoch) // milli:
                limit = (_dt.datetime(probe.year, 1, 1) - epoch.replace(tzinfo=None)) // milli
                break
    _zone_limits[tz] = limit
    return limit


cdef bint _valid_arrow(object arr):
    """Whether the array passes Arrow's full validation (for strings: offsets and UTF-8)."""
    try:
        arr.validate(full=True)
    except Exception:
        return False
    return True


cdef bint _in_range(object arr, int64_t lo, int64_t hi):
    """Whether every non-null value of an integer array lies in [lo, hi]."""
    import pyarrow.compute as pc

    if arr.null_count == len(arr):
        return True
    bounds = pc.min_max(arr)
    return lo <= bounds["min"].as_py() and bounds["max"].as_py() <= hi


# ================================================================================ decoder
cdef enum:
    D_PY = 0
    D_INT
    D_DOUBLE
    D_FLOAT
    D_BOOL
    D_STR
    D_BYTES
    D_DECIMAL
    D_DATETIME
    D_DATE

# Statuses of reading: a record, the buffer ends inside it, or the footer was read.
cdef enum:
    NEED_MORE = 0
    GOT_ROW = 1
    GOT_FOOTER = 2

# A varint read in C: ok, the buffer ends inside it, or the reference must read it
# (longer than 10 bytes, or 2**64 or more).
cdef enum:
    V_OK = 0
    V_MORE = 1
    V_SLOW = 2


cdef struct DecCol:
    int kind
    int wire_type


cdef inline int read_varint(const uint8_t *buf, Py_ssize_t n, Py_ssize_t *pos,
                            uint64_t *value) noexcept:
    cdef Py_ssize_t p = pos[0]
    cdef uint64_t result = 0, b
    cdef int shift = 0
    while True:
        if p >= n:
            return V_MORE
        b = buf[p]
        p += 1
        if shift == 63 and b > 1:
            return V_SLOW
        result |= (b & 0x7F) << shift
        if b < 0x80:
            pos[0] = p
            value[0] = result
            return V_OK
        shift += 7
        if shift >= 70:
            return V_SLOW


cdef extern from *:
    """
    /* f(arg), or None when that raises OverflowError or ValueError. */
    static PyObject *rc_call_or_none(PyObject *f, PyObject *arg) {
        PyObject *r = PyObject_CallOneArg(f, arg);
        if (r == NULL && (PyErr_ExceptionMatches(PyExc_OverflowError)
                          || PyErr_ExceptionMatches(PyExc_ValueError))) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return r;
    }

    /* A string-like value: kind 0 str from UTF-8, 1 bytes, 2 make_decimal(ASCII text);
       None when that raises an Exception (the caller falls back to the reference). */
    static PyObject *rc_text_value(int kind, const char *data, Py_ssize_t n,
                                   PyObject *make_decimal) {
        PyObject *v;
        if (kind == 0) {
            v = PyUnicode_DecodeUTF8(data, n, NULL);
        } else if (kind == 1) {
            v = PyBytes_FromStringAndSize(data, n);
        } else {
            PyObject *text = PyUnicode_DecodeASCII(data, n, NULL);
            v = text == NULL ? NULL : PyObject_CallOneArg(make_decimal, text);
            Py_XDECREF(text);
        }
        if (v == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return v;
    }
    """
    object rc_call_or_none(object f, object arg)
    object rc_text_value(int kind, const char *data, Py_ssize_t n, object make_decimal)


@cython.final
cdef class CRecordDecoder:
    """Decodes record bodies read from a binary stream, verifying every checksum.

    Same constructor, attributes (``columns``, ``count``, ``finished``, ``metrics``,
    ``offset``), values and errors as ``PyRecordDecoder``. Iterating and ``read_row()``
    give value lists; ``read_rows(n)`` gives up to ``n`` tuples.
    """

    cdef public list columns
    cdef public long long count
    cdef public bint finished
    cdef public object metrics
    cdef object _stream
    cdef object _read_size
    cdef bint _require_footer
    cdef bytes _buf
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _base
    cdef bint _eof
    cdef list _decoders
    cdef DecCol *_cols
    cdef Py_ssize_t _ncols
    cdef Buf _crc
    cdef Buf _pending
    cdef uint32_t _crccrc
    cdef bytearray _tmp_crc
    cdef object _make_decimal
    cdef bint _atomic  # every column decodes to a non-container value
    cdef object _tz
    cdef object _fromutc  # tz.fromutc, or None when tz is datetime.UTC

    def __init__(self, columns, stream, tz=None, encoding="utf-8", string_as_binary=False,
                 require_footer=True, read_size=65536):
        ref = _reference()
        self.columns = list(columns)
        codecs_ = ref._codecs(tz, encoding, string_as_binary)
        self._decoders = [codecs_.decoder(c.type) for c in self.columns]
        self._stream = stream
        self._read_size = read_size
        self._require_footer = require_footer
        self._buf = b""
        self._pos = 0
        self._base = 0
        self._eof = False
        self.count = 0
        self._crccrc = 0
        self.finished = False
        self.metrics = None
        self._tmp_crc = bytearray()
        self._make_decimal = _EXACT_DECIMALS.create_decimal
        self._tz = codecs_.tz
        self._fromutc = None if self._tz is _dt.UTC else self._tz.fromutc
        self._ncols = len(self.columns)
        self._cols = <DecCol *>realloc(self._cols, max(self._ncols, 1) * sizeof(DecCol))
        if self._cols == NULL:
            raise MemoryError()
        cdef Py_ssize_t i
        cdef bint utf8 = _is_utf8(encoding)
        cdef bint as_binary = bool(codecs_.string_as_binary)
        for i in range(self._ncols):
            dt = self.columns[i].type
            self._cols[i].wire_type = ref.wire_type_of(dt)
            kind = D_PY
            if isinstance(dt, _types.IntegerType):
                kind = D_INT
            elif dt == _types.double:
                kind = D_DOUBLE
            elif dt == _types.float_:
                kind = D_FLOAT
            elif dt == _types.boolean:
                kind = D_BOOL
            elif dt == _types.binary or (as_binary and (
                    isinstance(dt, _types._StringType) or isinstance(dt, _types.Decimal))):
                kind = D_BYTES  # the reference reads decimals as bytes too then
            elif isinstance(dt, _types._StringType):
                kind = D_STR if utf8 else D_PY
            elif isinstance(dt, _types.Decimal):
                kind = D_DECIMAL
            elif dt == _types.datetime:
                kind = D_DATETIME
            elif dt == _types.date:
                kind = D_DATE
            self._cols[i].kind = kind
        self._atomic = all(self._cols[i].kind != D_PY for i in range(self._ncols))

    def __dealloc__(self):
        free(self._cols)
        free(self._crc.data)
        free(self._pending.data)

    @property
    def offset(self):
        """Body offset of the next unread record."""
        return self._base + self._pos

    cdef bint _fill(self) except -1:
        """Read more input; False at end of stream."""
        if self._eof:
            return False
        data = self._stream.read(self._read_size)
        if not data:
            self._eof = True
            return False
        self._base += self._pos
        self._buf = self._buf[self._pos:] + bytes(data)
        self._pos = 0
        return True

    cdef _at_eof(self):
        if self._pos == len(self._buf) and not self._require_footer:
            self.finished = True
            return None
        where = "inside a record" if self._pos < len(self._buf) else "before the footer"
        raise StreamTruncatedError(
            f"record stream ended {where} after {self.count} rows",
            offset=self._base + len(self._buf),
            row=self.count,
        )

    def __iter__(self):
        return self

    def __next__(self):
        row = self.read_row()
        if row is None:
            raise StopIteration
        return row

    def read_row(self):
        """The next row's values as a list (None where null), or None after the footer."""
        cdef list rows = self._read(1, False)
        return rows[0] if rows else None

    def read_rows(self, Py_ssize_t max_rows):
        """Up to ``max_rows`` rows as tuples; fewer only at the end of the body, ``[]`` after
        it. An error is raised as soon as it is met: rows decoded earlier in the same call
        are not returned, and the error's ``row`` is the index of the bad row."""
        return self._read(max_rows, True)

    cdef list _read(self, Py_ssize_t max_rows, bint as_tuples):
        cdef list rows = []
        cdef int status
        while len(rows) < max_rows and not self.finished:
            try:
                status = self._records(rows, max_rows, as_tuples)
            except (_NeedMore, IndexError):  # as the reference: read more, parse again
                status = NEED_MORE
            except DataStreamError as exc:
                raise exc.with_context(offset=self.offset, row=self.count) from None
            except struct.error as exc:
                raise DataStreamError(str(exc), offset=self.offset, row=self.count) from None
            if status == NEED_MORE and not self._fill():
                self._at_eof()
        return rows

    cdef int _records(self, list rows, Py_ssize_t max_rows, bint as_tuples) except -1:
        """Append records to ``rows`` until ``max_rows``, the end of the buffer (NEED_MORE)
        or the footer (GOT_FOOTER)."""
        cdef int status
        cdef object row
        while len(rows) < max_rows:
            row = (<object>PyTuple_NewNones(self._ncols)) if as_tuples \
                else (<object>PyList_NewNones(self._ncols))
            status = self._record(PySequence_Fast_ITEMS(row))
            if status != GOT_ROW:
                return status
            if as_tuples and self._atomic:
                # A tuple of ints, floats, strs, datetimes ... can hold no reference cycle;
                # CPython's collector untracks such tuples when it meets them. Doing it now
                # spares every collection until then from walking the rows.
                PyObject_GC_UnTrack(row)
            rows.append(row)
        return GOT_ROW

    cdef int _record(self, PyObject **items) except -1:
        """Parse the record at ``_pos`` into ``items``. Record-level problems raise here
        with the reference's messages; value problems are the reference decoder's."""
        cdef const uint8_t *buf = <const uint8_t *>PyBytes_AS_STRING(self._buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(self._buf)
        cdef Py_ssize_t pos = self._pos, tag_pos
        cdef uint64_t t, field, value
        cdef int st
        cdef uint32_t expected
        self._crc.size = 0
        while True:
            tag_pos = pos
            if pos >= n:
                return NEED_MORE
            if buf[pos] < 0x80:
                t = buf[pos]
                pos += 1
            else:
                st = read_varint(buf, n, &pos, &t)
                if st == V_MORE:
                    return NEED_MORE
                if st == V_SLOW:  # raises, or is a field number far too large
                    big, _ = _reference()._get_varint(self._buf, tag_pos)
                    raise DataStreamError(
                        f"unexpected field number {big >> 3} (schema has {self._ncols} columns)"
                    )
            field = t >> 3
            if 1 <= field <= <uint64_t>self._ncols:
                if <int>(t & 7) != self._cols[field - 1].wire_type:
                    raise DataStreamError(
                        f"field {field} ({self.columns[field - 1].name}) has wire type {t & 7}"
                    )
                reserve(&self._crc, 4)
                put_le(&self._crc, field, 4)
                pos = self._value(field - 1, buf, n, pos, items)
                if pos < 0:
                    return NEED_MORE
                continue
            if field == END_RECORD:
                st = read_varint(buf, n, &pos, &value)
                if st == V_MORE:
                    return NEED_MORE
                if st == V_SLOW:
                    big, pos = _reference()._get_varint(self._buf, pos)
                    value = big & 0xFFFFFFFF
                expected = rc_crc32c(self._crc.data, self._crc.size, 0)
                if <uint32_t>value != expected:
                    raise ChecksumError(
                        f"record CRC {value & 0xFFFFFFFF:#010x} != computed {expected:#010x}"
                    )
                reserve(&self._pending, 4)
                put_le(&self._pending, expected, 4)
                if self._pending.size >= FOLD_AT:
                    self._crccrc = rc_crc32c(self._pending.data, self._pending.size, self._crccrc)
                    self._pending.size = 0
                self._pos = pos
                self.count += 1
                return GOT_ROW
            if field == META_COUNT and self._crc.size == 0:
                stream_crc = rc_crc32c(self._pending.data, self._pending.size, self._crccrc)
                self._pos, self.metrics = _reference()._parse_footer(
                    self._buf, pos, self.count, stream_crc
                )
                self.finished = True
                return GOT_FOOTER
            if field == 0:
                continue
            raise DataStreamError(
                f"unexpected field number {field} (schema has {self._ncols} columns)"
            )

    cdef Py_ssize_t _value(self, Py_ssize_t i, const uint8_t *buf, Py_ssize_t n,
                           Py_ssize_t pos, PyObject **items) except -2:
        """Read column ``i``'s value at ``pos`` into ``items[i]``; returns the position
        after it, or -1 when the buffer ends inside it."""
        cdef int kind = self._cols[i].kind
        cdef uint64_t z, length
        cdef int64_t v
        cdef int st, year, month, day
        cdef Py_ssize_t start = pos
        cdef double d
        cdef float f
        cdef uint64_t bits64
        cdef uint32_t bits32
        cdef object value
        if kind == D_INT or kind == D_DATETIME or kind == D_DATE:
            st = read_varint(buf, n, &pos, &z)
            if st == V_MORE:
                return -1
            if st == V_OK:
                v = <int64_t>(z >> 1) ^ -<int64_t>(z & 1)
                if kind == D_INT:
                    value = PyLong_FromLongLong(v)
                elif kind == D_DATE:
                    if MIN_DAYS <= v <= MAX_DAYS:
                        civil_from_days(v, &year, &month, &day)
                        value = date_new(year, month, day)
                    else:
                        return self._python_value(i, start, items)
                else:
                    value = self._datetime(v)
                    if value is None:
                        return self._python_value(i, start, items)
                reserve(&self._crc, 8)
                put_le(&self._crc, <uint64_t>v, 8)
                set_item(items, i, value)
                return pos
        elif kind == D_DOUBLE:
            if pos + 8 > n:
                return -1
            bits64 = get_le(buf + pos, 8)
            memcpy(&d, &bits64, 8)
            reserve(&self._crc, 8)
            put_raw(&self._crc, <const char *>buf + pos, 8)
            set_item(items, i, PyFloat_FromDouble(d))
            return pos + 8
        elif kind == D_STR or kind == D_BYTES or kind == D_DECIMAL:
            if pos < n and buf[pos] < 0x80:
                length = buf[pos]
                pos += 1
                st = V_OK
            else:
                st = read_varint(buf, n, &pos, &length)
            if st == V_MORE:
                return -1
            if st == V_OK:
                if length > <uint64_t>(n - pos):
                    return -1
                if self._text(i, <const char *>buf + pos, <Py_ssize_t>length, items):
                    reserve(&self._crc, <Py_ssize_t>length)
                    put_raw(&self._crc, <const char *>buf + pos, <Py_ssize_t>length)
                    return pos + <Py_ssize_t>length
        elif kind == D_BOOL:
            if pos >= n:
                return -1
            reserve(&self._crc, 1)
            put_raw(&self._crc, <const char *>buf + pos, 1)
            set_item(items, i, True if buf[pos] else False)
            return pos + 1
        elif kind == D_FLOAT:
            if pos + 4 > n:
                return -1
            bits32 = <uint32_t>get_le(buf + pos, 4)
            memcpy(&f, &bits32, 4)
            if not isnan(f):
                reserve(&self._crc, 4)
                put_raw(&self._crc, <const char *>buf + pos, 4)
                set_item(items, i, PyFloat_FromDouble(f))
                return pos + 4
        return self._python_value(i, start, items)

    cdef object _datetime(self, int64_t millis):
        """The reference's DATETIME value of epoch milliseconds: the naive wall clock in
        tz, or None (the reference then reads it) when it is out of range.

        For UTC that is ``1970-01-01 + millis``. Otherwise the reference's
        ``utc.astimezone(tz)``, which is ``tz.fromutc`` of the UTC fields with tzinfo=tz,
        then ``replace(tzinfo=None)``, which keeps every field and ``fold``.
        """
        cdef int64_t days = floor_div(millis, MS_PER_DAY)
        cdef int64_t ms_of_day = millis - days * MS_PER_DAY
        cdef int year, month, day
        if not MIN_DAYS <= days <= MAX_DAYS:
            return None
        civil_from_days(days, &year, &month, &day)
        if self._fromutc is None:
            return datetime_new(year, month, day, <int>(ms_of_day // 3600000),
                                <int>(ms_of_day // 60000 % 60), <int>(ms_of_day // 1000 % 60),
                                <int>(ms_of_day % 1000) * 1000, None)
        local = rc_call_or_none(self._fromutc, datetime_new(
            year, month, day, <int>(ms_of_day // 3600000), <int>(ms_of_day // 60000 % 60),
            <int>(ms_of_day // 1000 % 60), <int>(ms_of_day % 1000) * 1000, self._tz))
        if not PyDateTime_CheckExact(local):  # None: OverflowError or ValueError
            return None
        return datetime_new(
            PyDateTime_GET_YEAR(local), PyDateTime_GET_MONTH(local), PyDateTime_GET_DAY(local),
            PyDateTime_DATE_GET_HOUR(local), PyDateTime_DATE_GET_MINUTE(local),
            PyDateTime_DATE_GET_SECOND(local), PyDateTime_DATE_GET_MICROSECOND(local), None,
            PyDateTime_DATE_GET_FOLD(local))

    cdef bint _text(self, Py_ssize_t i, const char *data, Py_ssize_t n,
                    PyObject **items) except -1:
        """Set a string-like value; False when the reference must read it (it then raises
        its error for invalid UTF-8 or an invalid decimal)."""
        cdef int kind = self._cols[i].kind
        value = rc_text_value(0 if kind == D_STR else (1 if kind == D_BYTES else 2), data, n,
                              self._make_decimal)
        if value is None:  # an Exception was raised
            return False
        set_item(items, i, value)
        return True

    cdef Py_ssize_t _python_value(self, Py_ssize_t i, Py_ssize_t pos,
                                  PyObject **items) except -2:
        """Read a value with the reference's decoder for its column."""
        cdef bytearray crc = self._tmp_crc
        try:
            value, pos = self._decoders[i](self._buf, pos, crc)
            append_bytearray(&self._crc, crc)
        finally:
            del crc[:]
        set_item(items, i, value)
        return pos


cdef extern from *:
    """
    /* A new tuple or list of n Nones. */
    static PyObject *rc_tuple_of_nones(Py_ssize_t n) {
        PyObject *t = PyTuple_New(n);
        if (t == NULL) return NULL;
        for (Py_ssize_t i = 0; i < n; i++) { Py_INCREF(Py_None); PyTuple_SET_ITEM(t, i, Py_None); }
        return t;
    }
    static PyObject *rc_list_of_nones(Py_ssize_t n) {
        PyObject *t = PyList_New(n);
        if (t == NULL) return NULL;
        for (Py_ssize_t i = 0; i < n; i++) { Py_INCREF(Py_None); PyList_SET_ITEM(t, i, Py_None); }
        return t;
    }
    """
    object PyTuple_NewNones "rc_tuple_of_nones" (Py_ssize_t n)
    object PyList_NewNones "rc_list_of_nones" (Py_ssize_t n)
