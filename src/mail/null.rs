//! The `null` provider: marks every email sent and sends nothing, so a benchmark can time
//! Herald's own work (plan, claim, render, record, ack) without a mail server. Development only.

use super::{Outgoing, Receipt};

/// The name in `mail.providers` and on deliveries, attempts, metrics and Redis keys.
pub const NAME: &str = "null";

/// Discards `email`. The receipt's id names the null provider, so a delivery marked sent this
/// way says where it went.
pub fn discard(email: &Outgoing<'_>) -> Receipt {
    Receipt {
        code: None,
        provider_id: Some(format!("{NAME}:{}", email.message_id)),
    }
}

#[cfg(test)]
mod tests {
    use crate::{config::Settings, mail::Provider, render::Rendered};

    use super::super::Outgoing;

    #[tokio::test]
    async fn a_null_provider_is_named_null_and_its_receipt_says_so() {
        let settings = Settings::load_from(
            &crate::kinds::defaults(),
            None,
            &[("HERALD__MAIL__PROVIDERS".into(), "[\"null\"]".into())],
        )
        .unwrap();
        let providers = Provider::build_all(&settings.mail).unwrap();
        assert_eq!(providers.len(), 1);
        let null = &providers[0];
        assert_eq!(null.name(), "null");
        assert_eq!(null.outbox(), None);
        null.test_connection().await.unwrap();
        let content = Rendered {
            subject: "s".into(),
            html: "<p>h</p>".into(),
            text: "t".into(),
            to_name: None,
        };
        let receipt = null
            .send(&Outgoing {
                to: "a@example.com",
                message_id: "1.k@example.com",
                delivery_key: "k:1",
                content: &content,
                list_unsubscribe: None,
            })
            .await
            .unwrap();
        assert_eq!(receipt.code, None);
        assert_eq!(receipt.provider_id.as_deref(), Some("null:1.k@example.com"));
    }
}
