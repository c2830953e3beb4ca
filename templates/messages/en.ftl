# Herald's English messages. Every message here must also be in the other locales' files;
# `herald check` lists the ones a locale lacks (the default locale's text is sent instead).
# Syntax: https://projectfluent.org/fluent/guide/

## Dates and times. The patterns are chrono's (strftime); day and month names come from the
## locale's data.

date-short = %a %-d %b
date-long = %A %-d %B %Y
datetime = { $date }, { $time }

relative-now = now
relative-in = in { $span }
relative-ago = { $span } ago
relative-today = today at { $time }
relative-tomorrow = tomorrow at { $time }
relative-yesterday = yesterday at { $time }
relative-days-ago = { $days ->
    [one] 1 day ago
   *[other] { $days } days ago
}
relative-on = on { $date } at { $time }
span-minutes = { $n ->
    [one] 1 minute
   *[other] { $n } minutes
}
span-hours = { $n ->
    [one] 1 hour
   *[other] { $n } hours
}
span-hours-minutes = { $hours } { $minutes }

## The layout: greeting and footer.

greeting = Hi { $name },
footer-zone = Times are shown in { $zone }.
footer-unsubscribe = Unsubscribe from these emails
footer-preferences = Notification settings
why-task_reminders = You get this email because reminders of tasks due tomorrow are on in your notification settings.
why-overdue_summary = You get this email because the daily summary of overdue tasks is on in your notification settings.
why-weekly_report = You get this email because the weekly report is on in your notification settings.
why-focus_streak = You get this email because the daily focus summary is on in your notification settings.
why-due_soon = You get this email because reminders before a task falls due are on in your notification settings.
why-overdue_morning = You get this email because morning reminders of overdue tasks are on in your notification settings.
labelled = { $label }: { $value }
heading = { $text }:
due-at = due { $at }

## task_reminders

task_reminders-subject = { $count ->
    [one] 1 task is due tomorrow
   *[other] { $count } tasks are due tomorrow
}
task_reminders-title = Due tomorrow
task_reminders-intro = Here is what is due tomorrow, { $date }:
task_reminders-item = at { $time }
task_reminders-button = Open my tasks

## overdue_summary

overdue_summary-subject = { $count ->
    [one] 1 task is overdue
   *[other] { $count } tasks are overdue
}
overdue_summary-title = Overdue tasks
overdue_summary-intro = These tasks are past their due time:
overdue_summary-button = Open my tasks

## weekly_report

weekly_report-subject = Your week: { $done } done, { $minutes ->
    [one] 1 minute
   *[other] { $minutes } minutes
} of focus
weekly_report-title = Your week
weekly_report-intro = Your week, the seven days before { $to }:
weekly_report-completed = { $n ->
    [one] 1 task completed
   *[other] { $n } tasks completed
}
weekly_report-focus = { $minutes ->
    [one] 1 minute
   *[other] { $minutes } minutes
} of focus in { $sessions ->
    [one] 1 session
   *[other] { $sessions } sessions
}
weekly_report-overdue = { $n ->
    [one] 1 task still overdue
   *[other] { $n } tasks still overdue
}
weekly_report-completed-heading = Completed
weekly_report-overdue-heading = Still overdue
weekly_report-button = See my week

## focus_streak

focus_streak-subject = { $minutes ->
    [one] 1 minute
   *[other] { $minutes } minutes
} of focus today
focus_streak-subject-streak = { $minutes ->
    [one] 1 minute
   *[other] { $minutes } minutes
} of focus today: { $days } days in a row
focus_streak-title = Your focus today
focus_streak-summary = Today, { $date }, you focused for { $minutes ->
    [one] 1 minute
   *[other] { $minutes } minutes
} in { $sessions ->
    [one] 1 session
   *[other] { $sessions } sessions
}.
focus_streak-streak = That makes { $days } days in a row with a focus session. Keep it going tomorrow!
focus_streak-day-one = That is day one of a streak: one session tomorrow makes it two.
focus_streak-button = See my focus sessions

## due_soon

due_soon-subject = Due { $when }: { $title }
due_soon-title = Due soon
due_soon-body = Due { $when } ({ $at }).
due_soon-button = Open the task

## overdue_morning

overdue_morning-subject = Still open: { $title }
overdue_morning-title = Still open
overdue_morning-body = It was due { $when } ({ $at }) and is still open.
overdue_morning-button = Open the task
