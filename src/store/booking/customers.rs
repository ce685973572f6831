//! Customers (leads): one row per (business, phone) across channels, created or refreshed
//! by `upsert_customer`, never duplicated for the same phone.

use super::super::{Columns, Store, StoreError};
use super::new_id;

/// One customer (lead) of a business: one per phone, across channels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: String,
    pub phone: String,
    pub name: Option<String>,
    pub status: String,
    pub first_channel: String,
    pub last_channel: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Columns for CustomerRow {
    const COLUMNS: &'static str = "id, phone, name, status, first_channel, last_channel, \
         created_at_ms, updated_at_ms";
}

impl Store {
    /// One customer per (business, phone): creates it or refreshes name and channel.
    pub async fn upsert_customer(
        &self,
        business_id: &str,
        phone: &str,
        name: Option<&str>,
        channel: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO customers (id, business_id, phone, name, status, first_channel, \
             last_channel, notes, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, NULL, $7, $7) \
             ON CONFLICT (business_id, phone) DO UPDATE SET \
             name = COALESCE(excluded.name, customers.name), status = excluded.status, \
             last_channel = excluded.last_channel, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(new_id("cust"))
        .bind(business_id)
        .bind(phone)
        .bind(name)
        .bind(status)
        .bind(channel)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT id FROM customers WHERE business_id = $1 AND phone = $2")
                .bind(business_id)
                .bind(phone)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The name a customer gave on any channel (by business and phone).
    pub async fn customer_name(
        &self,
        business_id: &str,
        phone: &str,
    ) -> Result<Option<String>, StoreError> {
        let name: Option<Option<String>> =
            sqlx::query_scalar("SELECT name FROM customers WHERE business_id = $1 AND phone = $2")
                .bind(business_id)
                .bind(phone)
                .fetch_optional(&self.pool)
                .await?;
        Ok(name.flatten())
    }

    pub async fn customer_count(&self, business_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) AS n FROM customers WHERE business_id = $1")
                .bind(business_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
