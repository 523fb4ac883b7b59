//! `auth.login_ex` mechanism `SCRAM` (26+), as plugins/auth.py `login_ex` and
//! plugins/auth_/login_ex_impl.py `login_ex_scram` drive pam_truenas: CLIENT_FIRST_MESSAGE
//! answers SCRAM_RESPONSE / SERVER_FIRST_RESPONSE, CLIENT_FINAL_MESSAGE answers
//! SERVER_FINAL_RESPONSE and only then logs the connection in (`session_manager.login`); any
//! failure is AUTH_ERR after the fail delay; a final message with no exchange in progress is
//! a CallError. The math is in `scram.rs`.

use serde_json::{json, Value};

use super::auth::auth_err;
use super::errors::{RpcError, EINVAL};
use super::jsonrpc::{lock, ConnHandle, Session};
use super::methods::required_str;
use super::scram::{parse_client_first, ServerExchange, ServerOptions};
use super::state::Shared;

pub(super) async fn login(
    shared: &Shared,
    conn: &ConnHandle,
    data: &Value,
) -> Result<Value, RpcError> {
    let scram_type = required_str(data, "scram_type", "auth.login_ex.data")?;
    let rfc = required_str(data, "rfc_str", "auth.login_ex.data")?;
    match scram_type.as_str() {
        "CLIENT_FIRST_MESSAGE" => {
            // A new first message abandons an exchange in progress on this connection.
            lock(conn).scram = None;
            let Ok(first) = parse_client_first(&rfc) else {
                return Ok(auth_err(shared).await);
            };
            // pam_truenas finds the key by id in the named user's keyring.
            let key_id = shared
                .api_key
                .split_once('-')
                .and_then(|(id, _)| id.parse::<u32>().ok());
            let known = first.username == shared.api_user
                && Some(first.api_key_id) == key_id
                && !shared.lock().key_revoked;
            if !known {
                return Ok(auth_err(shared).await);
            }
            let creds = shared.scram_credentials().await;
            let options = ServerOptions {
                wrong_server_signature: shared.scram_wrong_signature,
            };
            let Ok((exchange, server_first)) = ServerExchange::server_first(first, creds, options)
            else {
                return Ok(auth_err(shared).await);
            };
            lock(conn).scram = Some(exchange);
            Ok(json!({
                "response_type": "SCRAM_RESPONSE",
                "scram_type": "SERVER_FIRST_RESPONSE",
                "rfc_str": server_first,
                "user_info": null
            }))
        }
        "CLIENT_FINAL_MESSAGE" => {
            let Some(exchange) = lock(conn).scram.take() else {
                return Err(RpcError::call(
                    EINVAL,
                    "SCRAM authentication is not in progress",
                ));
            };
            match exchange.client_final(&rfc) {
                Ok(server_final) => {
                    lock(conn).session = Some(Session::ApiKey);
                    Ok(json!({
                        "response_type": "SCRAM_RESPONSE",
                        "scram_type": "SERVER_FINAL_RESPONSE",
                        "rfc_str": server_final,
                        "user_info": {"pw_name": shared.api_user}
                    }))
                }
                Err(_) => Ok(auth_err(shared).await),
            }
        }
        other => Err(RpcError::call(
            EINVAL,
            format!("{other}: invalid SCRAM type"),
        )),
    }
}
