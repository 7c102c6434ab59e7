use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::fields::model::{split_options, FieldType, RecordKind};
use crate::schema::{
    application_answers, application_stakeholders, applications, process_items, process_steps,
    processes,
};
use crate::stored::stored_enum;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = processes)]
pub struct Process {
    pub id: i64,
    pub name: String,
    #[diesel(deserialize_as = String)]
    pub kind: RecordKind,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Process {
    pub fn record_kind(&self) -> RecordKind {
        self.kind
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = process_steps)]
pub struct Step {
    pub id: i64,
    pub process_id: i64,
    pub position: i32,
    pub title: String,
    pub per_stakeholder: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = process_items)]
pub struct Item {
    pub id: i64,
    pub process_id: i64,
    pub step_id: i64,
    pub position: i32,
    pub key: String,
    pub label: String,
    pub item_type: String,
    pub required: bool,
    pub options: String,
}

impl Item {
    pub fn ftype(&self) -> FieldType {
        FieldType::parse(&self.item_type).unwrap_or(FieldType::Text)
    }

    pub fn option_list(&self) -> Vec<String> {
        split_options(&self.options)
    }
}

/// A step with its items, in order.
#[derive(Debug, Clone)]
pub struct StepView {
    pub step: Step,
    pub items: Vec<Item>,
}

stored_enum! {
    /// A draft is still being filled in; a submitted application is final.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ApplicationStatus as "application status" {
        Draft = "draft",
        Submitted = "submitted",
    }
}

stored_enum! {
    /// Where an answer's value came from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AnswerOrigin as "answer origin" {
        /// Copied from the record when the application was opened.
        Prefill = "prefill",
        /// Typed by a person.
        Typed = "typed",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = applications)]
pub struct Application {
    pub id: i64,
    pub process_id: i64,
    pub record_id: i64,
    #[diesel(deserialize_as = String)]
    pub status: ApplicationStatus,
    pub created_by: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub submitted_at: Option<NaiveDateTime>,
}

impl Application {
    pub fn is_draft(&self) -> bool {
        self.status == ApplicationStatus::Draft
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = application_stakeholders)]
pub struct Stakeholder {
    pub id: i64,
    pub application_id: i64,
    pub contact_id: i64,
    pub role: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = application_answers)]
pub struct Answer {
    pub id: i64,
    pub application_id: i64,
    pub item_id: i64,
    /// 0 for a shared step's answer.
    pub stakeholder_id: i64,
    pub value: String,
    #[diesel(deserialize_as = String)]
    pub origin: AnswerOrigin,
    pub updated_at: NaiveDateTime,
}
