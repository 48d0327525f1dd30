// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Yuma} from "./Yuma.sol";

/// @title One covenant training run on an EVM chain: who takes part under which uid, where their
/// buckets are, validators' stake and weights, and rewards paid by the consensus of those
/// weights. The embedded ledger (crates/net/src/chain/ledger.rs) has the same rules; see
/// docs/CHAIN.md. Where it fits, the shape follows Bittensor's EVM neuron precompile
/// (`setWeights`, `commitWeights`, `revealWeights`), so that a Bittensor backend stays thin.
///
/// Amounts are in wei. Stakes count in Yuma consensus in gwei (10^9 wei), the unit the nodes
/// count balances in (`covenant_net::chain::TOKEN` units per token).
contract Subnet {
    // ---------------------------------------------------------------- limits
    uint256 public constant MAX_URL = 512;
    uint256 public constant MAX_CREDENTIALS = 1024;
    /// Yuma sorts each uid's column of weights: its gas grows with the square of this.
    uint256 public constant MAX_VALIDATORS = 16;
    /// Weights may name this uid: its consensus share is burned (paid to nobody).
    uint16 public constant BURN_UID = type(uint16).max;

    // ---------------------------------------------------------------- configuration
    struct Config {
        uint16 netuid;
        string runId;
        /// blake3 of the run spec's canonical JSON, and where to fetch it.
        bytes32 specHash;
        string specUrl;
        uint64 blocksPerWindow;
        /// 1 ..= 65535 (uid 65535 is `BURN_UID`, so at most 65535 slots).
        uint16 maxUids;
        uint64 immunityBlocks;
        /// Wei burned by each registration (kept by this contract, never spendable).
        uint256 registrationBurn;
        /// Least stake (wei) that makes an account a validator.
        uint256 minValidatorStake;
        uint64 unstakeDelayBlocks;
        /// Least blocks between two weight settings of one validator.
        uint64 weightsRateLimit;
        /// Yuma threshold in parts per 10^9 (0.5: 500000000).
        uint64 kappa;
        uint64 versionKey;
        /// Weights must be committed, then revealed no sooner than `revealDelayBlocks` later
        /// and no later than `revealDelayBlocks + revealWindowBlocks`.
        bool commitReveal;
        uint64 revealDelayBlocks;
        uint64 revealWindowBlocks;
        /// Blocks per reward epoch, and the most paid out of the pool per epoch.
        uint64 epochBlocks;
        uint256 emissionPerEpoch;
    }

    Config internal cfg;
    /// (Storage, not immutable: every deployment has the same code, which nodes check by hash.)
    uint64 public genesisBlock;

    function config() external view returns (Config memory) {
        return cfg;
    }

    // ---------------------------------------------------------------- state
    struct Neuron {
        address account;
        /// The participant's ed25519 payload key, and its ed25519 signature over
        /// `registrationMessage(account)`: nodes ignore a uid whose proof does not verify.
        bytes32 hotkey;
        bytes proof;
        uint64 registeredBlock;
    }

    struct Commitment {
        string bucketUrl;
        string readCredentials;
        uint64 block_;
    }

    struct Validator {
        uint256 stake;
        uint256 unstaking;
        uint64 unstakeReadyBlock;
        uint64 lastWeightsBlock;
        bool listed;
        uint16[] dests;
        uint16[] weights;
    }

    struct WeightsCommit {
        bytes32 hash;
        uint64 block_;
    }

    Neuron[] internal neurons; // index = uid; slots are only ever replaced, never freed
    mapping(address => uint16) internal uidPlusOne;
    mapping(uint16 => Commitment) internal commitments;
    mapping(address => Validator) internal validators;
    address[] internal validatorList;
    mapping(address => WeightsCommit) public weightsCommits;

    uint256 public burnedTotal;
    uint256 public emissionPool;
    uint64 public lastEpochPaid;
    bool public anyEpochPaid;
    mapping(address => uint256) public rewardsOwed;

    // ---------------------------------------------------------------- events
    event Registered(uint16 indexed uid, address indexed account, bytes32 hotkey, address replaced);
    event Committed(uint16 indexed uid, string bucketUrl, string readCredentials);
    event Staked(address indexed validator, uint256 amount, uint256 stake);
    event UnstakeRequested(address indexed validator, uint256 amount, uint64 readyBlock);
    event ValidatorReplaced(address indexed leaving, address indexed joining);
    event Withdrawn(address indexed validator, uint256 amount);
    event WeightsSet(address indexed validator, uint16[] dests, uint16[] weights);
    event WeightsCommitted(address indexed validator, bytes32 hash);
    event PoolFunded(address indexed from, uint256 amount, uint256 pool);
    event EpochPaid(uint64 indexed epoch, uint256 paid, uint256 burned);
    event RewardClaimed(address indexed account, uint256 amount);

    // ---------------------------------------------------------------- errors
    error BadConfig(string what);
    error WrongNetuid(uint16 expected, uint16 found);
    error WrongBurn(uint256 required, uint256 sent);
    error AlreadyRegistered(uint16 uid);
    error Full(uint16 maxUids);
    error BadProof();
    error NotRegistered();
    error TooLong(string field, uint256 length, uint256 max);
    error NotValidator();
    error TooManyValidators(uint256 max);
    error StakeTooSmall(uint256 minimum, uint256 stake);
    error InsufficientStake(uint256 requested, uint256 stake);
    error NothingToWithdraw();
    error UnstakeNotReady(uint64 readyBlock);
    error WeightsTooSoon(uint64 nextBlock);
    error InvalidWeights(string why);
    error WrongVersionKey(uint64 expected, uint64 found);
    error CommitRevealOn();
    error CommitRevealOff();
    error NoCommit();
    error RevealTooEarly(uint64 firstBlock);
    error RevealTooLate(uint64 lastBlock);
    error RevealMismatch();
    error EpochNotDue(uint64 epoch);
    error TransferFailed();

    constructor(Config memory c) {
        if (c.maxUids == 0 || c.maxUids == BURN_UID) revert BadConfig("maxUids must be 1..=65534");
        if (c.blocksPerWindow == 0) revert BadConfig("blocksPerWindow must be > 0");
        if (c.epochBlocks == 0) revert BadConfig("epochBlocks must be > 0");
        if (c.kappa == 0 || c.kappa > Yuma.ONE) revert BadConfig("kappa must be in (0, 1e9]");
        if (c.minValidatorStake < 1 gwei) revert BadConfig("minValidatorStake must be >= 1 gwei");
        if (bytes(c.runId).length == 0 || bytes(c.runId).length > 128) revert BadConfig("runId must be 1..=128 bytes");
        if (bytes(c.specUrl).length > MAX_URL) revert BadConfig("specUrl too long");
        cfg = c;
        genesisBlock = uint64(block.number);
    }

    // ---------------------------------------------------------------- registration
    /// What a participant's ed25519 key signs to bind itself to `account` on this contract.
    function registrationMessage(address account) public view returns (bytes memory) {
        return abi.encodePacked("covenant/evm-register/v1", block.chainid, address(this), account);
    }

    /// Registers the sender under the lowest free uid, or, when every slot is taken, in place of
    /// the uid with the lowest consensus weight past its immunity (ties: the oldest registration,
    /// then the lowest uid). Burns exactly `registrationBurn` wei, sent with the call.
    function register(bytes32 hotkey, bytes calldata proof) external payable returns (uint16 uid) {
        if (msg.value != cfg.registrationBurn) revert WrongBurn(cfg.registrationBurn, msg.value);
        if (proof.length != 64) revert BadProof();
        uint16 have = uidPlusOne[msg.sender];
        if (have != 0) revert AlreadyRegistered(have - 1);
        address replaced;
        (uid, replaced) = _slot();
        if (replaced != address(0)) {
            uidPlusOne[replaced] = 0;
            delete commitments[uid];
            _dropWeightsFor(uid);
        }
        Neuron memory n = Neuron(msg.sender, hotkey, proof, uint64(block.number));
        if (uid == neurons.length) neurons.push(n);
        else neurons[uid] = n;
        uidPlusOne[msg.sender] = uid + 1;
        burnedTotal += msg.value;
        emit Registered(uid, msg.sender, hotkey, replaced);
    }

    function _slot() internal view returns (uint16, address) {
        if (neurons.length < cfg.maxUids) return (uint16(neurons.length), address(0));
        (uint16[] memory uids, uint256[] memory ranks,) = consensus();
        bool found;
        uint256 best;
        for (uint256 i = 0; i < uids.length; i++) {
            Neuron storage n = neurons[uids[i]];
            if (n.registeredBlock + cfg.immunityBlocks > block.number) continue;
            if (!found || _beats(ranks[i], n.registeredBlock, uids[i], ranks[best], neurons[uids[best]].registeredBlock, uids[best])) {
                best = i;
                found = true;
            }
        }
        if (!found) revert Full(cfg.maxUids);
        return (uids[best], neurons[uids[best]].account);
    }

    /// Whether (rank, registered, uid) a is a better victim than b: lower rank, older, lower uid.
    function _beats(uint256 ra, uint64 ga, uint16 ua, uint256 rb, uint64 gb, uint16 ub) internal pure returns (bool) {
        if (ra != rb) return ra < rb;
        if (ga != gb) return ga < gb;
        return ua < ub;
    }

    function _dropWeightsFor(uint16 uid) internal {
        for (uint256 v = 0; v < validatorList.length; v++) {
            Validator storage val = validators[validatorList[v]];
            for (uint256 i = 0; i < val.dests.length; i++) {
                if (val.dests[i] == uid) val.weights[i] = 0;
            }
        }
    }

    /// Publishes where the sender's uploads are and read-only credentials for them.
    function commit(string calldata bucketUrl, string calldata readCredentials) external {
        uint16 have = uidPlusOne[msg.sender];
        if (have == 0) revert NotRegistered();
        if (bytes(bucketUrl).length > MAX_URL) revert TooLong("bucketUrl", bytes(bucketUrl).length, MAX_URL);
        if (bytes(readCredentials).length > MAX_CREDENTIALS) {
            revert TooLong("readCredentials", bytes(readCredentials).length, MAX_CREDENTIALS);
        }
        commitments[have - 1] = Commitment(bucketUrl, readCredentials, uint64(block.number));
        emit Committed(have - 1, bucketUrl, readCredentials);
    }

    // ---------------------------------------------------------------- validators
    /// Adds the value sent to the sender's stake. A newcomer takes a free entry of the validator
    /// list or, when all `MAX_VALIDATORS` are taken, the first whose stake no longer counts
    /// (below the minimum): that validator leaves the list with its weights, and keeps what it
    /// has staked or is unstaking. So a stake that was withdrawn never holds a slot.
    function stake() external payable {
        Validator storage v = validators[msg.sender];
        uint256 s = v.stake + msg.value;
        if (s < cfg.minValidatorStake) revert StakeTooSmall(cfg.minValidatorStake, s);
        if (!v.listed) {
            v.listed = true;
            if (validatorList.length < MAX_VALIDATORS) validatorList.push(msg.sender);
            else validatorList[_idleEntry()] = msg.sender;
        }
        v.stake = s;
        emit Staked(msg.sender, msg.value, s);
    }

    /// The first entry of the full validator list whose stake counts 0, unlisted and without
    /// weights; `TooManyValidators` if every stake counts.
    function _idleEntry() internal returns (uint256) {
        for (uint256 i = 0; i < validatorList.length; i++) {
            address a = validatorList[i];
            if (stakeOf(a) != 0) continue;
            Validator storage old = validators[a];
            old.listed = false;
            delete old.dests;
            delete old.weights;
            delete weightsCommits[a];
            old.lastWeightsBlock = 0;
            emit ValidatorReplaced(a, msg.sender);
            return i;
        }
        revert TooManyValidators(MAX_VALIDATORS);
    }

    /// Moves `amount` of the stake out of consensus now; it can be withdrawn
    /// `unstakeDelayBlocks` later. A stake left below the minimum counts as 0. One ready block
    /// per validator: a new request also delays what was already unstaking.
    function requestUnstake(uint256 amount) external {
        Validator storage v = validators[msg.sender];
        if (amount == 0 || amount > v.stake) revert InsufficientStake(amount, v.stake);
        v.stake -= amount;
        v.unstaking += amount;
        v.unstakeReadyBlock = uint64(block.number) + cfg.unstakeDelayBlocks;
        emit UnstakeRequested(msg.sender, amount, v.unstakeReadyBlock);
    }

    function withdraw() external {
        Validator storage v = validators[msg.sender];
        uint256 amount = v.unstaking;
        if (amount == 0) revert NothingToWithdraw();
        if (block.number < v.unstakeReadyBlock) revert UnstakeNotReady(v.unstakeReadyBlock);
        v.unstaking = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed();
    }

    /// Stake that counts (wei): 0 below the minimum.
    function stakeOf(address validator) public view returns (uint256) {
        uint256 s = validators[validator].stake;
        return s >= cfg.minValidatorStake ? s : 0;
    }

    // ---------------------------------------------------------------- weights
    function setWeights(uint16 netuid, uint16[] calldata dests, uint16[] calldata weights, uint64 versionKey)
        external
    {
        if (cfg.commitReveal) revert CommitRevealOn();
        _setWeights(netuid, dests, weights, versionKey);
    }

    function commitWeights(uint16 netuid, bytes32 commitHash) external {
        if (!cfg.commitReveal) revert CommitRevealOff();
        if (netuid != cfg.netuid) revert WrongNetuid(cfg.netuid, netuid);
        if (stakeOf(msg.sender) == 0) revert NotValidator();
        weightsCommits[msg.sender] = WeightsCommit(commitHash, uint64(block.number));
        emit WeightsCommitted(msg.sender, commitHash);
    }

    /// The hash `commitWeights` takes for these weights.
    function weightsHash(
        address validator,
        uint16 netuid,
        uint16[] calldata uids,
        uint16[] calldata values,
        uint16[] calldata salt,
        uint64 versionKey
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(validator, netuid, uids, values, salt, versionKey));
    }

    function revealWeights(
        uint16 netuid,
        uint16[] calldata uids,
        uint16[] calldata values,
        uint16[] calldata salt,
        uint64 versionKey
    ) external {
        if (!cfg.commitReveal) revert CommitRevealOff();
        WeightsCommit memory c = weightsCommits[msg.sender];
        if (c.hash == bytes32(0)) revert NoCommit();
        uint64 first = c.block_ + cfg.revealDelayBlocks;
        uint64 last = first + cfg.revealWindowBlocks;
        if (block.number < first) revert RevealTooEarly(first);
        if (block.number > last) revert RevealTooLate(last);
        if (weightsHash(msg.sender, netuid, uids, values, salt, versionKey) != c.hash) revert RevealMismatch();
        delete weightsCommits[msg.sender];
        _setWeights(netuid, uids, values, versionKey);
    }

    function _setWeights(uint16 netuid, uint16[] calldata dests, uint16[] calldata weights, uint64 versionKey)
        internal
    {
        if (netuid != cfg.netuid) revert WrongNetuid(cfg.netuid, netuid);
        if (versionKey != cfg.versionKey) revert WrongVersionKey(cfg.versionKey, versionKey);
        if (stakeOf(msg.sender) == 0) revert NotValidator();
        Validator storage v = validators[msg.sender];
        if (v.lastWeightsBlock != 0 && block.number < v.lastWeightsBlock + cfg.weightsRateLimit) {
            revert WeightsTooSoon(v.lastWeightsBlock + cfg.weightsRateLimit);
        }
        if (dests.length != weights.length) revert InvalidWeights("dests and weights differ in length");
        if (dests.length > uint256(cfg.maxUids) + 1) revert InvalidWeights("more entries than uids");
        // One bit per possible uid: duplicates found in one pass.
        uint256[] memory seen = new uint256[](256);
        for (uint256 i = 0; i < dests.length; i++) {
            uint256 d = dests[i];
            if (d >= cfg.maxUids && d != BURN_UID) revert InvalidWeights("uid out of range");
            uint256 bit = 1 << (d & 255);
            if (seen[d >> 8] & bit != 0) revert InvalidWeights("uid listed twice");
            seen[d >> 8] |= bit;
        }
        v.dests = dests;
        v.weights = weights;
        v.lastWeightsBlock = uint64(block.number);
        emit WeightsSet(msg.sender, dests, weights);
    }

    // ---------------------------------------------------------------- consensus and rewards
    /// A validator's raw weights over the `n` registered uids (0 .. n-1) and the burn (at n);
    /// weights on in-range uids not registered yet are ignored.
    function _row(Validator storage val, uint256 n) internal view returns (uint256[] memory row) {
        row = new uint256[](n + 1);
        uint16[] memory dests = val.dests;
        uint16[] memory weights = val.weights;
        for (uint256 i = 0; i < dests.length; i++) {
            uint256 d = dests[i];
            if (d < n) row[d] = weights[i];
            else if (d == BURN_UID) row[n] = weights[i];
        }
    }

    /// The current consensus: registered uids and their ranks, then the burn's rank.
    function consensus() public view returns (uint16[] memory uids, uint256[] memory ranks, uint256 burnRank) {
        uint256 n = neurons.length;
        uint16[] memory all = new uint16[](n + 1);
        for (uint256 u = 0; u < n; u++) all[u] = uint16(u);
        all[n] = BURN_UID;
        uint256 m = validatorList.length;
        uint256[] memory stakes = new uint256[](m);
        uint256[][] memory rows = new uint256[][](m);
        for (uint256 v = 0; v < m; v++) {
            address a = validatorList[v];
            stakes[v] = stakeOf(a) / 1 gwei;
            rows[v] = _row(validators[a], n);
        }
        (, uint256[] memory r) = Yuma.compute(n + 1, stakes, rows, cfg.kappa);
        uids = new uint16[](n);
        ranks = new uint256[](n);
        for (uint256 i = 0; i < n; i++) {
            uids[i] = all[i];
            ranks[i] = r[i];
        }
        burnRank = r[n];
    }

    /// The same rule as the nodes' (`covenant_core::consensus`), for tests on both sides.
    function yuma(uint256 n, uint256[] calldata stakes, uint256[][] calldata rows, uint64 kappa)
        external
        pure
        returns (uint256[] memory consensusValues, uint256[] memory ranks)
    {
        return Yuma.compute(n, stakes, rows, kappa);
    }

    /// Adds the value sent to the emission pool.
    function fundPool() external payable {
        emissionPool += msg.value;
        emit PoolFunded(msg.sender, msg.value, emissionPool);
    }

    function currentEpoch() public view returns (uint64) {
        return uint64((block.number - genesisBlock) / cfg.epochBlocks);
    }

    /// Pays the last finished epoch once (anyone may call it): `min(emissionPerEpoch, pool)` split
    /// by the current consensus weights, owed to the uids' accounts (see `claim`); the burn uid's
    /// share, and everything when nobody has weight, stays in the pool. An epoch not paid before
    /// the next one finishes is skipped; its emission stays in the pool.
    function payEpoch() external {
        uint64 now_ = currentEpoch();
        if (now_ == 0 || (anyEpochPaid && lastEpochPaid >= now_ - 1)) revert EpochNotDue(now_);
        uint64 epoch = now_ - 1;
        lastEpochPaid = epoch;
        anyEpochPaid = true;
        uint256 amount = cfg.emissionPerEpoch < emissionPool ? cfg.emissionPerEpoch : emissionPool;
        (uint16[] memory uids, uint256[] memory ranks, uint256 burnRank) = consensus();
        uint256 total = burnRank;
        for (uint256 i = 0; i < ranks.length; i++) total += ranks[i];
        uint256 paid;
        if (total > 0) {
            for (uint256 i = 0; i < uids.length; i++) {
                uint256 share = amount * ranks[i] / total;
                if (share == 0) continue;
                rewardsOwed[neurons[uids[i]].account] += share;
                paid += share;
            }
        }
        emissionPool -= paid;
        emit EpochPaid(epoch, paid, total > 0 ? amount * burnRank / total : 0);
    }

    function claim() external {
        uint256 amount = rewardsOwed[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        rewardsOwed[msg.sender] = 0;
        emit RewardClaimed(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed();
    }

    // ---------------------------------------------------------------- reads
    function neuronCount() external view returns (uint256) {
        return neurons.length;
    }

    function neuron(uint16 uid) external view returns (Neuron memory) {
        return neurons[uid];
    }

    function uidOf(address account) external view returns (bool, uint16) {
        uint16 have = uidPlusOne[account];
        return (have != 0, have == 0 ? 0 : have - 1);
    }

    function commitmentOf(uint16 uid) external view returns (Commitment memory) {
        return commitments[uid];
    }

    /// Every uid's registration, by uid (one call for a node's snapshot).
    function allNeurons() external view returns (Neuron[] memory) {
        return neurons;
    }

    /// Every uid's commitment, by uid (empty URL: none yet).
    function allCommitments() external view returns (Commitment[] memory all) {
        all = new Commitment[](neurons.length);
        for (uint256 u = 0; u < neurons.length; u++) all[u] = commitments[uint16(u)];
    }

    function validatorCount() external view returns (uint256) {
        return validatorList.length;
    }

    function validatorAt(uint256 i)
        external
        view
        returns (address account, uint256 stake_, uint256 unstaking, uint64 lastWeightsBlock, uint16[] memory dests, uint16[] memory weights)
    {
        account = validatorList[i];
        Validator storage v = validators[account];
        return (account, stakeOf(account), v.unstaking, v.lastWeightsBlock, v.dests, v.weights);
    }
}
