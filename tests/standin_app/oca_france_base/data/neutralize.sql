-- A neutralized copy must neither send mail nor run scheduled jobs.
UPDATE ir_mail_server SET active = false;
UPDATE ir_cron SET active = false;
