// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Yuma-style consensus in integers: the one rule the nodes also compute
/// (`covenant_core::consensus::yuma_fixed`, which must give the same integers; test
/// `the_contract_computes_the_nodes_yuma` in crates/evm/tests/contract.rs checks both).
///
/// For `n` uids and validators with `stakes[v]` (0: ignored) and raw weights `rows[v][i]`:
/// 1. W[v][i] = floor(rows[v][i] * ONE / sum_i rows[v][i]) (all 0 when the row sums to 0);
/// 2. C[i] = the smallest W[v][i] such that the validators whose W[·][i] is at most it hold
///    stake s with s * ONE >= (ONE - kappa) * total stake (0 without stake);
/// 3. rank[i] = sum_v stakes[v] * min(W[v][i], C[i]).
/// rank[i] / sum rank is uid i's consensus weight.
library Yuma {
    uint256 internal constant ONE = 1e9;

    function compute(uint256 n, uint256[] memory stakes, uint256[][] memory rows, uint64 kappa)
        internal
        pure
        returns (uint256[] memory c, uint256[] memory rank)
    {
        uint256 m = stakes.length;
        require(rows.length == m, "Yuma: one row per stake");
        uint256[][] memory w = new uint256[][](m);
        uint256 total;
        for (uint256 v = 0; v < m; v++) {
            require(rows[v].length == n, "Yuma: one weight per uid");
            w[v] = normalised(rows[v]);
            total += stakes[v];
        }
        c = new uint256[](n);
        rank = new uint256[](n);
        uint256[] memory vals = new uint256[](m);
        uint256[] memory sts = new uint256[](m);
        for (uint256 i = 0; i < n; i++) {
            uint256 k;
            for (uint256 v = 0; v < m; v++) {
                if (stakes[v] == 0) continue;
                vals[k] = w[v][i];
                sts[k] = stakes[v];
                k++;
            }
            c[i] = lowerQuantile(vals, sts, k, total, kappa);
            for (uint256 v = 0; v < m; v++) {
                uint256 x = w[v][i] < c[i] ? w[v][i] : c[i];
                rank[i] += stakes[v] * x;
            }
        }
    }

    function normalised(uint256[] memory row) internal pure returns (uint256[] memory out) {
        out = new uint256[](row.length);
        uint256 sum;
        for (uint256 i = 0; i < row.length; i++) sum += row[i];
        if (sum == 0) return out;
        for (uint256 i = 0; i < row.length; i++) out[i] = row[i] * ONE / sum;
    }

    /// Sorts the first `k` (value, stake) pairs by value (insertion sort: k is small) and walks up
    /// until the stake seen reaches (ONE - kappa) / ONE of the total.
    function lowerQuantile(uint256[] memory vals, uint256[] memory sts, uint256 k, uint256 total, uint64 kappa)
        internal
        pure
        returns (uint256)
    {
        if (k == 0 || total == 0) return 0;
        for (uint256 a = 1; a < k; a++) {
            uint256 x = vals[a];
            uint256 s = sts[a];
            uint256 b = a;
            while (b > 0 && vals[b - 1] > x) {
                vals[b] = vals[b - 1];
                sts[b] = sts[b - 1];
                b--;
            }
            vals[b] = x;
            sts[b] = s;
        }
        uint256 need = (ONE - kappa) * total;
        uint256 acc;
        for (uint256 a = 0; a < k; a++) {
            acc += sts[a];
            if (acc * ONE >= need) return vals[a];
        }
        return vals[k - 1];
    }
}
