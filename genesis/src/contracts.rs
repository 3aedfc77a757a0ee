//! The contracts this build of bidchain carries (built from `contracts/` by build.rs), and
//! the [`Contracts`] a chain runs: exactly the ones its genesis pins, by code hash.

use bidchain_runtime::bounded::BoundedString;
use bidchain_runtime::contract::Contracts;
use bidchain_runtime::hash::Hash;

use crate::{Genesis, GenesisContract, GenesisError};

include!(concat!(env!("OUT_DIR"), "/bundled_contracts.rs"));

/// The bundled contracts' pins, for a new genesis.
pub fn bundled_pins() -> Vec<GenesisContract> {
    BUNDLED
        .iter()
        .map(|(name, code)| GenesisContract {
            name: BoundedString::truncating(name),
            code_hash: Hash::digest(code),
        })
        .collect()
}

/// The bundled code of contract `name`.
pub fn bundled_code(name: &str) -> Option<&'static [u8]> {
    BUNDLED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, code)| *code)
}

impl Genesis {
    /// Compiles the contracts genesis pins; each must be bundled with the pinned hash.
    pub fn contracts(&self) -> Result<Contracts, GenesisError> {
        let invalid = |name: &str, reason: String| GenesisError::ContractInvalid {
            name: name.to_owned(),
            reason,
        };
        let mut contracts = Contracts::new().map_err(|e| invalid("(engine)", e.to_string()))?;
        for pin in &self.contracts {
            let name = pin.name.as_str();
            let code = bundled_code(name).filter(|code| Hash::digest(code) == pin.code_hash);
            let Some(code) = code else {
                let bundled = bundled_code(name)
                    .map_or("no contract of that name".to_owned(), |c| {
                        Hash::digest(c).to_string()
                    });
                return Err(GenesisError::ContractCodeMismatch {
                    name: name.to_owned(),
                    pinned: pin.code_hash,
                    bundled,
                });
            };
            contracts
                .install(name, code)
                .map_err(|e| invalid(name, e.to_string()))?;
        }
        Ok(contracts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genesis(pins: Vec<GenesisContract>) -> Genesis {
        let mut genesis: Genesis = serde_json::from_str(
            r#"{"chain_id":"t","genesis_time":"2026-01-01T00:00:00Z","validators":[{"name":"hub","role":"hub",
            "public_key":"0000000000000000000000000000000000000000000000000000000000000001",
            "p2p_address":"/ip4/127.0.0.1/tcp/1"}]}"#,
        )
        .unwrap();
        genesis.contracts = pins;
        genesis
    }

    #[test]
    fn the_bundled_contracts_compile_and_a_wrong_pin_is_refused() {
        let pins = bundled_pins();
        assert_eq!(pins.len(), 3);
        let contracts = genesis(pins.clone()).contracts().unwrap();
        for pin in &pins {
            assert_eq!(contracts.code_hash(pin.name.as_str()), Some(pin.code_hash));
        }
        let mut wrong = pins;
        wrong[0].code_hash = Hash::digest(b"other code");
        assert!(matches!(
            genesis(wrong).contracts(),
            Err(GenesisError::ContractCodeMismatch { .. })
        ));
    }
}
