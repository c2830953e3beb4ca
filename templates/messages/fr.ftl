# Les messages de Herald en français. Les espaces avant « : », « ! » et « ? » sont insécables.
# Syntaxe : https://projectfluent.org/fluent/guide/

## Dates et heures (motifs strftime de chrono ; noms des jours et des mois en français).

date-short = %a %-d %b
date-long = %A %-d %B %Y
datetime = { $date } à { $time }

relative-now = maintenant
relative-in = dans { $span }
relative-ago = il y a { $span }
relative-today = aujourd’hui à { $time }
relative-tomorrow = demain à { $time }
relative-yesterday = hier à { $time }
relative-days-ago = { $days ->
    [one] il y a 1 jour
   *[other] il y a { $days } jours
}
relative-on = le { $date } à { $time }
span-minutes = { $n ->
    [one] { $n } minute
   *[other] { $n } minutes
}
span-hours = { $n ->
    [one] { $n } heure
   *[other] { $n } heures
}
span-hours-minutes = { $hours } { $minutes }

## La mise en page : salutation et pied de page.

greeting = Bonjour { $name },
footer-zone = Les heures sont celles du fuseau { $zone }.
footer-unsubscribe = Se désabonner de ces e-mails
footer-preferences = Préférences de notification
why-task_reminders = Vous recevez cet e-mail car le rappel des tâches à rendre le lendemain est activé dans vos préférences de notification.
why-overdue_summary = Vous recevez cet e-mail car le récapitulatif quotidien des tâches en retard est activé dans vos préférences de notification.
why-weekly_report = Vous recevez cet e-mail car le bilan hebdomadaire est activé dans vos préférences de notification.
why-focus_streak = Vous recevez cet e-mail car le bilan quotidien de concentration est activé dans vos préférences de notification.
why-due_soon = Vous recevez cet e-mail car les rappels avant l’échéance d’une tâche sont activés dans vos préférences de notification.
why-overdue_morning = Vous recevez cet e-mail car le rappel matinal des tâches en retard est activé dans vos préférences de notification.
labelled = { $label } : { $value }
heading = { $text } :
due-at = échéance { $at }

## task_reminders

task_reminders-subject = { $count ->
    [one] { $count } tâche à rendre demain
   *[other] { $count } tâches à rendre demain
}
task_reminders-title = À rendre demain
task_reminders-intro = Voici ce qui est à rendre demain, { $date } :
task_reminders-item = à { $time }
task_reminders-button = Ouvrir mes tâches

## overdue_summary

overdue_summary-subject = { $count ->
    [one] { $count } tâche en retard
   *[other] { $count } tâches en retard
}
overdue_summary-title = Tâches en retard
overdue_summary-intro = Ces tâches ont dépassé leur échéance :
overdue_summary-button = Ouvrir mes tâches

## weekly_report

weekly_report-subject = Votre semaine : { $done ->
    [one] { $done } terminée
   *[other] { $done } terminées
}, { $minutes ->
    [one] { $minutes } minute
   *[other] { $minutes } minutes
} de concentration
weekly_report-title = Votre semaine
weekly_report-intro = Votre semaine du { $from } au { $to } :
weekly_report-completed = { $n ->
    [one] { $n } tâche terminée
   *[other] { $n } tâches terminées
}
weekly_report-focus = { $minutes ->
    [one] { $minutes } minute
   *[other] { $minutes } minutes
} de concentration en { $sessions ->
    [one] { $sessions } séance
   *[other] { $sessions } séances
}
weekly_report-overdue = { $n ->
    [one] { $n } tâche toujours en retard
   *[other] { $n } tâches toujours en retard
}
weekly_report-completed-heading = Terminées
weekly_report-overdue-heading = Toujours en retard
weekly_report-button = Voir ma semaine

## focus_streak

focus_streak-subject = { $minutes ->
    [one] { $minutes } minute
   *[other] { $minutes } minutes
} de concentration aujourd’hui
focus_streak-subject-streak = { $minutes ->
    [one] { $minutes } minute
   *[other] { $minutes } minutes
} de concentration aujourd’hui : { $days } jours d’affilée
focus_streak-title = Votre concentration aujourd’hui
focus_streak-summary = Aujourd’hui, { $date }, { $minutes ->
    [one] { $minutes } minute
   *[other] { $minutes } minutes
} de concentration en { $sessions ->
    [one] { $sessions } séance
   *[other] { $sessions } séances
}.
focus_streak-streak = Cela fait { $days } jours d’affilée avec une séance de concentration. Continuez demain !
focus_streak-day-one = C’est le premier jour d’une série : une séance demain, et cela en fera deux.
focus_streak-button = Voir mes séances

## due_soon

due_soon-subject = À rendre { $when } : { $title }
due_soon-title = Bientôt à rendre
due_soon-body = À rendre { $when } ({ $at }).
due_soon-button = Ouvrir la tâche

## overdue_morning

overdue_morning-subject = Toujours en cours : { $title }
overdue_morning-title = Toujours en cours
overdue_morning-body = Elle était à rendre { $when } ({ $at }) et n’est pas encore terminée.
overdue_morning-button = Ouvrir la tâche
