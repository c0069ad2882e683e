/* kernels/layout.cuh: the shared-memory tile layout of the mma.sync kernels.
 * A tile holds rows of HEAD_DIM 16-bit values; a row is CHUNKS chunks of 16 bytes (8
 * values) and ROW_BYTES apart.  ldmatrix reads one chunk from each of 8 consecutive
 * rows: were rows stored plainly, a multiple of 128 bytes apart, those 8 chunks would
 * sit in the same 4 banks and the read would serialize 8 ways.  (The wgmma kernels'
 * layout is in wgmma.cuh.) */
#pragma once
#include "common.cuh"

/* The byte offset of chunk `chunk` of row `row` in a tile:
 *   CHUNKS a multiple of 8 (head_dim 64, 128, 256): swizzle: chunk c of row r is stored
 *     at chunk c ^ (r % 8), so the 8 rows' chunks land in 8 different bank groups;
 *     whole 16-byte chunks stay aligned for cp.async.
 *   CHUNKS == 4 (head_dim 32): rows are 64 bytes, two share a 128-byte bank line:
 *     chunk c of row r is stored at chunk c ^ ((r / 2) % 4), so 8 consecutive rows
 *     cover all 8 bank groups.
 *   otherwise (head_dim 96): padding: rows are one chunk longer than the data (an odd
 *     number of chunks, ROW_BYTES), so 8 consecutive rows start in 8 different bank
 *     groups. */
DEV u32 tile_off(int row, int chunk)
{
    if constexpr (CHUNKS % 8 == 0) return row * ROW_BYTES + ((chunk ^ (row & 7)) << 4);
    else if constexpr (CHUNKS == 4) return row * ROW_BYTES + ((chunk ^ ((row >> 1) & 3)) << 4);
    else return row * ROW_BYTES + (chunk << 4);
}

/* This layout as a type, for the loaders that serve both layouts (loads.cuh,
 * bwd_common.cuh): off<ROWS>(row, chunk); the tile's rows do not matter here. */
struct pad_tiles {
    template <int ROWS> DEV u32 off(int row, int chunk) { return tile_off(row, chunk); }
};
