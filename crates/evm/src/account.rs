//! Every participant holds one secret, its ed25519 key (`covenant keygen`). The Ethereum
//! account that sends its transactions is derived from it: the secp256k1 secret is
//! `blake3::derive_key("covenant evm account v1", ed25519 seed)`. On registration the ed25519
//! key signs `registration_message` (chain id, contract, account), so nodes can check that a
//! uid's payload key belongs to the account that registered it (the contract cannot verify
//! ed25519 cheaply; it stores the proof, and nodes ignore a uid whose proof does not verify).

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use covenant_net::{Keypair, PublicKey};

use crate::EvmError;

const ACCOUNT_CONTEXT: &str = "covenant evm account v1";
const REGISTRATION_DOMAIN: &[u8] = b"covenant/evm-register/v1";

/// The Ethereum signer of this ed25519 key (the same key always gives the same account).
pub fn evm_signer(key: &Keypair) -> Result<PrivateKeySigner, EvmError> {
    let seed = key.signing_key().to_bytes();
    let secret = blake3::derive_key(ACCOUNT_CONTEXT, &seed);
    PrivateKeySigner::from_bytes(&B256::from(secret)).map_err(|_| EvmError::NoAccount)
}

/// What the ed25519 key signs to bind itself to `account` on the contract at `contract` of
/// chain `chain_id`: the contract's `registrationMessage(account)`.
pub fn registration_message(chain_id: u64, contract: Address, account: Address) -> Vec<u8> {
    let mut m = REGISTRATION_DOMAIN.to_vec();
    m.extend_from_slice(&U256::from(chain_id).to_be_bytes::<32>());
    m.extend_from_slice(contract.as_slice());
    m.extend_from_slice(account.as_slice());
    m
}

/// The ed25519 signature over [`registration_message`].
pub fn registration_proof(
    key: &Keypair,
    chain_id: u64,
    contract: Address,
    account: Address,
) -> [u8; 64] {
    key.sign(&registration_message(chain_id, contract, account))
}

/// Whether `proof` is `hotkey`'s signature binding it to `account`.
pub fn proof_verifies(
    hotkey: &PublicKey,
    proof: &[u8],
    chain_id: u64,
    contract: Address,
    account: Address,
) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(proof) else {
        return false;
    };
    hotkey.verify(&registration_message(chain_id, contract, account), &sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_gives_one_account_and_its_proof_verifies_for_that_account_only() {
        let k = Keypair::from_seed([7; 32]);
        let a = evm_signer(&k).unwrap().address();
        assert_eq!(
            a,
            evm_signer(&Keypair::from_seed([7; 32])).unwrap().address()
        );
        assert_ne!(
            a,
            evm_signer(&Keypair::from_seed([8; 32])).unwrap().address()
        );
        let c = Address::repeat_byte(0xC0);
        let p = registration_proof(&k, 31337, c, a);
        assert!(proof_verifies(&k.public(), &p, 31337, c, a));
        assert!(!proof_verifies(
            &k.public(),
            &p,
            31337,
            c,
            Address::repeat_byte(1)
        ));
        assert!(!proof_verifies(&k.public(), &p, 1, c, a));
        assert!(!proof_verifies(&k.public(), &p[..63], 31337, c, a));
        let other = Keypair::from_seed([9; 32]).public();
        assert!(!proof_verifies(&other, &p, 31337, c, a));
    }
}
