//! Rust bindings of the `Subnet` contract, generated from its checked-in compiled output (ABI
//! and bytecode; `scripts/compile-contracts.js` makes it, a test checks it is fresh).

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    Subnet,
    "../../contracts/out/Subnet.json"
);
