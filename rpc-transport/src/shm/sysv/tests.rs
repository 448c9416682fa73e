//! Tests of `sysv-shm://`: the segment's lifecycle, the orphan sweep, the checks on a segment
//! handed over, and the system limits.
