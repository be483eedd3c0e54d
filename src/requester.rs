//! Request/response (MQTT 5, `await client.request(...)` in `umqtt.aio`): a publish with a
//! response topic and correlation data of its own, answered by the message that carries that
//! correlation data back. The client subscribes to its response topic once, on first use.

use crate::errors::DriverError;
use crate::lock::lock;
use crate::protocol::{Inbound, Outbound, Subscription};
use crate::replies;
use crate::session::{Core, Request};
use rumqttc::QoS;

impl Core {
    /// Publishes `request` with a response topic (`response_topic`, else the client's own) and
    /// correlation data of its own, and returns the reply. The caller bounds the wait.
    pub async fn request_reply(
        &self,
        mut request: Outbound,
        response_topic: Option<String>,
    ) -> Result<Inbound, DriverError> {
        let topic = match response_topic {
            Some(topic) => topic,
            None => self.own_response_topic(),
        };
        self.subscribe_for_replies(&topic).await?;
        let mut waiter = self.shared.replies.wait();
        let properties = request.properties.get_or_insert_with(Default::default);
        properties.response_topic = Some(topic);
        properties.correlation_data = Some(waiter.correlation.clone());
        self.request(Request::Publish(request)).await?;
        (&mut waiter.reply).await.map_err(|_| DriverError::Closed)
    }

    /// The broker's CONNACK response information when it sent one (it asks for
    /// `request_response_information`), else `umqtt/resp/<client id>/<random>`; the same for
    /// the client's life.
    fn own_response_topic(&self) -> String {
        let mut own = lock(&self.shared.replies.own_topic);
        if let Some(topic) = own.as_ref() {
            return topic.clone();
        }
        let informed = lock(&self.shared.connack)
            .as_ref()
            .and_then(|properties| properties.response_information.clone())
            .filter(|topic| !topic.is_empty() && !topic.contains(['+', '#']));
        let topic = informed.unwrap_or_else(|| {
            let client_id: String = (self.client_id().chars())
                .map(|c| if matches!(c, '/' | '+' | '#') { '_' } else { c })
                .collect();
            format!("umqtt/resp/{client_id}/{:016x}", replies::random())
        });
        *own = Some(topic.clone());
        topic
    }

    /// Subscribes to `topic` unless this session did already (one subscription per response
    /// topic; a reconnect re-subscribes it like any other).
    async fn subscribe_for_replies(&self, topic: &str) -> Result<(), DriverError> {
        let _one_at_a_time = self.shared.replies.subscribing.lock().await;
        if self.shared.replies.subscribed(topic) {
            return Ok(());
        }
        let subscription = Subscription::plain(topic.to_owned(), QoS::AtLeastOnce);
        self.subscribe(subscription).await?;
        self.shared.replies.note_subscribed(topic);
        Ok(())
    }
}
