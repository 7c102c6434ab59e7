//! The process rows data links read and write, with no knowledge of links: `links::service`
//! depends on this and `processes::service` on links, never both ways.

use diesel::prelude::*;
use diesel::result::Error as DieselError;
use std::collections::BTreeMap;

use super::model::{Answer, AnswerOrigin, Application, Item, Process, Stakeholder, Step};
use crate::db::{self, DbConn};
use crate::schema::{
    application_answers, application_stakeholders, applications, process_items, process_steps,
    processes,
};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0}")]
    Invalid(String),
    /// Answer key (`item:stakeholder`) -> message.
    #[error("{}", .0.values().cloned().collect::<Vec<_>>().join(" "))]
    Answers(BTreeMap<String, String>),
    #[error("{0} was not found.")]
    NotFound(&'static str),
    #[error(transparent)]
    Db(#[from] DieselError),
}

pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Process>> {
    processes::table
        .find(id)
        .select(Process::as_select())
        .first(conn)
        .optional()
}

pub fn find_item(conn: &mut DbConn, id: i64) -> QueryResult<Option<Item>> {
    process_items::table
        .find(id)
        .select(Item::as_select())
        .first(conn)
        .optional()
}

pub fn find_step(conn: &mut DbConn, id: i64) -> QueryResult<Option<Step>> {
    process_steps::table
        .find(id)
        .select(Step::as_select())
        .first(conn)
        .optional()
}

pub fn stakeholders(conn: &mut DbConn, application_id: i64) -> QueryResult<Vec<Stakeholder>> {
    application_stakeholders::table
        .filter(application_stakeholders::application_id.eq(application_id))
        .order(application_stakeholders::id.asc())
        .select(Stakeholder::as_select())
        .load(conn)
}

pub fn find_application(conn: &mut DbConn, id: i64) -> QueryResult<Option<Application>> {
    applications::table
        .find(id)
        .select(Application::as_select())
        .first(conn)
        .optional()
}

pub fn answers(conn: &mut DbConn, application_id: i64) -> QueryResult<Vec<Answer>> {
    application_answers::table
        .filter(application_answers::application_id.eq(application_id))
        .select(Answer::as_select())
        .load(conn)
}

/// Writes one answer (insert or replace).
pub fn set_answer(
    conn: &mut DbConn,
    application_id: i64,
    item_id: i64,
    stakeholder_id: i64,
    value: &str,
    origin: AnswerOrigin,
) -> QueryResult<()> {
    diesel::delete(
        application_answers::table
            .filter(application_answers::application_id.eq(application_id))
            .filter(application_answers::item_id.eq(item_id))
            .filter(application_answers::stakeholder_id.eq(stakeholder_id)),
    )
    .execute(conn)?;
    diesel::insert_into(application_answers::table)
        .values((
            application_answers::application_id.eq(application_id),
            application_answers::item_id.eq(item_id),
            application_answers::stakeholder_id.eq(stakeholder_id),
            application_answers::value.eq(value),
            application_answers::origin.eq(origin.as_str()),
            application_answers::updated_at.eq(db::now()),
        ))
        .execute(conn)?;
    Ok(())
}
